package testutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StartTimeout bounds how long StartDaemon waits for the CRI socket to
// answer Version, and how long Stop waits for berthd to exit.
const StartTimeout = 20 * time.Second

// DaemonOptions configures NewDaemon and StartDaemon.
type DaemonOptions struct {
	// BinDir holds berthd and berth (see BuildBinaries). Required.
	BinDir string
	// ExtraTOML is appended to the generated berth.toml. TOML forbids
	// defining a table twice, so it may only add tables the generated file
	// lacks (e.g. [berth.metrics]); keys of [berth], [berth.api],
	// [berth.runtime], [berth.runtime.runtimes.runc], [berth.image] and
	// [berth.network] and [berth.nri] belong in DropIns.
	ExtraTOML string
	// DropIns are files of the drop-in directory, name -> content, e.g.
	// {"10-vfs.toml": "[berth]\nstorage_driver = \"vfs\"\n"}.
	DropIns map[string]string
	// Args are appended to berthd's command line.
	Args []string
	// Env is appended to the test's environment for berthd and berth.
	Env []string
	// ExtraFiles are open files berthd inherits from fd 3 on, as from a
	// supervisor that leaves fds open.
	ExtraFiles []*os.File
}

// Daemon is one berthd process with all its state in a private directory.
type Daemon struct {
	// Dir holds everything: config, storage, state, run dir, logs.
	Dir string
	// Socket is the CRI unix socket.
	Socket string
	// ConfigFile is the generated berth.toml; DropInDir is its drop-in dir.
	ConfigFile, DropInDir string
	// CNIDir is berth.network.network_dir (empty at start).
	CNIDir string
	// BinDir is DaemonOptions.BinDir.
	BinDir string
	// NRISocket is berth.nri.nri_listen, where external NRI plugins
	// connect; NRIPluginDir and NRIPluginConfigDir hold pre-installed
	// plugins and their configs (both empty at start).
	NRISocket, NRIPluginDir, NRIPluginConfigDir string

	// Runtime, Images and Conn talk CRI to the running berthd. Restart
	// replaces them: read them again after it.
	Runtime runtimeapi.RuntimeServiceClient
	Images  runtimeapi.ImageServiceClient
	Conn    *grpc.ClientConn
	// Cmd is the current (or last) berthd process.
	Cmd *exec.Cmd

	opts    DaemonOptions
	log     *SyncBuffer
	exited  chan struct{} // closed when Cmd has been waited for
	waitErr error         // Cmd.Wait's result, set before exited closes
	killed  bool          // the current process was ended by Kill
}

// StartDaemon is NewDaemon followed by Start.
func StartDaemon(t testing.TB, opts DaemonOptions) *Daemon {
	t.Helper()
	d := NewDaemon(t, opts)
	d.Start(t)
	return d
}

// NewDaemon prepares a daemon directory under /tmp (short, so that socket
// paths stay far below the unix limit) with berth.toml, an
// accept-anything policy.json and an empty registries.conf, without
// starting berthd. Cleanup stops berthd, removes leftover containers,
// processes and mounts, and deletes the directory. Skips unless root.
func NewDaemon(t testing.TB, opts DaemonOptions) *Daemon {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("berthd needs root")
	}
	if _, err := os.Stat(filepath.Join(opts.BinDir, "berthd")); err != nil {
		t.Fatalf("no berthd binary (call BuildBinaries in TestMain): %v", err)
	}
	dir, err := os.MkdirTemp("/tmp", "bt")
	if err != nil {
		t.Fatalf("daemon dir: %v", err)
	}
	d := &Daemon{
		Dir:        dir,
		Socket:     filepath.Join(dir, "run", "berth.sock"),
		ConfigFile: filepath.Join(dir, "berth.toml"),
		DropInDir:  filepath.Join(dir, "berth.toml.d"),
		CNIDir:     filepath.Join(dir, "cni"),
		BinDir:     opts.BinDir,
		opts:       opts,
		log:        &SyncBuffer{},

		NRISocket:          filepath.Join(dir, "run", "nri.sock"),
		NRIPluginDir:       filepath.Join(dir, "nri", "plugins"),
		NRIPluginConfigDir: filepath.Join(dir, "nri", "conf.d"),
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("berthd log (%s):\n%s", dir, d.Log())
		}
	})
	t.Cleanup(func() { d.cleanup(t) })
	if err := d.writeFiles(); err != nil {
		t.Fatalf("daemon files: %v", err)
	}
	return d
}

// Command returns an unstarted berthd command with the daemon's config
// flags, then args: d.Command("config") prints the effective config.
func (d *Daemon) Command(args ...string) *exec.Cmd {
	full := append([]string{"--config", d.ConfigFile, "--config-dir", d.DropInDir}, args...)
	cmd := exec.Command(filepath.Join(d.BinDir, "berthd"), full...)
	cmd.Env = append(os.Environ(), d.opts.Env...)
	return cmd
}

// Start runs berthd with opts.Args and waits until Version answers on
// the socket. It fails the test if berthd exits or is not ready within
// StartTimeout.
func (d *Daemon) Start(t testing.TB) {
	t.Helper()
	if d.running() {
		t.Fatalf("berthd is already running (pid %d)", d.Cmd.Process.Pid)
	}
	cmd := d.Command(d.opts.Args...)
	cmd.Stdout, cmd.Stderr = d.log, d.log
	cmd.ExtraFiles = d.opts.ExtraFiles
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(d.log, "=== testutil: starting %s\n", strings.Join(cmd.Args, " "))
	if err := cmd.Start(); err != nil {
		t.Fatalf("start berthd: %v", err)
	}
	d.Cmd, d.exited, d.killed = cmd, make(chan struct{}), false
	go func(exited chan struct{}) {
		d.waitErr = cmd.Wait()
		fmt.Fprintf(d.log, "=== testutil: berthd pid %d exited: %v\n", cmd.Process.Pid, d.waitErr)
		close(exited)
	}(d.exited)
	if err := d.connect(); err != nil {
		t.Fatalf("berthd did not become ready: %v", err)
	}
}

// connect waits for the socket to accept, then for Version to answer.
func (d *Daemon) connect() error {
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	for {
		if !d.running() {
			return fmt.Errorf("berthd exited early: %v", d.waitErr)
		}
		if c, err := net.DialTimeout("unix", d.Socket, time.Second); err == nil {
			c.Close()
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("socket %s not accepting after %v", d.Socket, StartTimeout)
		case <-d.exited:
		case <-time.After(50 * time.Millisecond):
		}
	}
	conn, err := grpc.NewClient("unix://"+d.Socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return fmt.Errorf("grpc client: %w", err)
	}
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	if _, err := rt.Version(ctx, &runtimeapi.VersionRequest{Version: "v1"}, grpc.WaitForReady(true)); err != nil {
		conn.Close()
		return fmt.Errorf("Version: %w", err)
	}
	d.Conn, d.Runtime, d.Images = conn, rt, runtimeapi.NewImageServiceClient(conn)
	return nil
}

func (d *Daemon) running() bool {
	if d.exited == nil {
		return false
	}
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM and waits up to StartTimeout. It fails the test if
// berthd does not exit in time (it is then killed), exits non-zero, or
// had already died on its own (a crash the test did not notice).
func (d *Daemon) Stop(t testing.TB) {
	t.Helper()
	if err := d.stop(); err != nil {
		t.Fatalf("stop berthd: %v", err)
	}
}

func (d *Daemon) stop() error {
	d.closeConn()
	if !d.running() {
		if d.exited != nil && d.waitErr != nil && !d.killed {
			return fmt.Errorf("berthd had already exited: %w", d.waitErr)
		}
		return nil
	}
	if err := d.Cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGTERM: %w", err)
	}
	select {
	case <-d.exited:
	case <-time.After(StartTimeout):
		d.Cmd.Process.Kill()
		<-d.exited
		return fmt.Errorf("berthd did not exit within %v of SIGTERM; killed", StartTimeout)
	}
	if d.waitErr != nil {
		return fmt.Errorf("berthd exited: %w", d.waitErr)
	}
	return nil
}

// Kill sends SIGKILL and waits for berthd to die (crash tests). Its
// containers and conmon processes keep running. On a berthd that has
// already exited it only acknowledges that exit, so cleanup does not
// report it as a crash.
func (d *Daemon) Kill(t testing.TB) {
	t.Helper()
	d.closeConn()
	d.killed = true
	if !d.running() {
		return
	}
	if err := d.Cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("kill berthd: %v", err)
	}
	<-d.exited
}

// Restart stops berthd (if running) and starts it again with the same
// directory, config and arguments. Runtime, Images and Conn are replaced.
func (d *Daemon) Restart(t testing.TB) {
	t.Helper()
	d.Stop(t)
	d.Start(t)
}

// Signal sends sig to berthd, e.g. syscall.SIGHUP to reload its config.
func (d *Daemon) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if !d.running() {
		t.Fatalf("signal %v: berthd is not running", sig)
	}
	if err := d.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// Exited reports whether a started berthd has exited, and its Wait error.
func (d *Daemon) Exited() (bool, error) {
	if d.exited == nil || d.running() {
		return false, nil
	}
	return true, d.waitErr
}

// Log returns berthd's stderr and stdout so far, across restarts.
func (d *Daemon) Log() string { return d.log.String() }

// CLI runs BinDir/berth with the daemon's socket as runtime and image
// endpoint and its ConfigFile as --config (for offline commands that
// open storage), then args; it returns stdout, and a failure's error
// includes stderr. It gives up after two minutes.
func (d *Daemon) CLI(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ep := "unix://" + d.Socket
	full := append([]string{"--runtime-endpoint", ep, "--image-endpoint", ep, "--config", d.ConfigFile}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(d.BinDir, "berth"), full...)
	cmd.Env = append(os.Environ(), d.opts.Env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("berth %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func (d *Daemon) closeConn() {
	if d.Conn != nil {
		d.Conn.Close()
		d.Conn, d.Runtime, d.Images = nil, nil, nil
	}
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers, e.g. a
// process's stderr or a logger read by the test.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
