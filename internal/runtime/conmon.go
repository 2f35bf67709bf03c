package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/tracing"
)

// Files conmon and runc keep in a container's bundle directory.
const (
	ConmonPidFile = "conmon-pidfile"
	PidFile       = "pidfile"
	CtlFIFO       = "ctl"
	ExitFile      = "exit"
	OOMFile       = "oom"
)

// DefaultCreateTimeout bounds runc create under conmon when the caller's
// context has no deadline.
const DefaultCreateTimeout = 2 * time.Minute

// CreateOptions describe one container for conmon.
type CreateOptions struct {
	ID   string
	Name string
	// Bundle holds config.json; conmon also puts its pid files, attach
	// socket and ctl FIFO there.
	Bundle string
	// PersistDir receives conmon's "exit" and "oom" files; it outlives a
	// reboot-free berthd restart and is where the exit code is read.
	PersistDir string
	// LogPath is the kubelet's container log (CRI format, k8s-file).
	LogPath    string
	LogSizeMax int64
	Runtime    OCI
	Terminal   bool
	Stdin      bool
	StdinOnce  bool
	// Cgroup, when set, receives conmon in the start-pipe window, before
	// it starts runc, so that conmon is accounted to the pod.
	Cgroup *cgroups.Cgroup
	// Owner, when set, claims ID before conmon starts: it receives the
	// exit and conmon-death notices of this container.
	Owner *Owner
}

// Created is what a successful create leaves running.
type Created struct {
	Conmon    Proc
	Container Proc
}

// syncMessage is conmon's report on the sync pipe (legacy API, no
// --api-version): {"pid": N} or {"pid": -1, "message": "..."}.
type syncMessage struct {
	Pid     int    `json:"pid"`
	Message string `json:"message,omitempty"`
}

// Create runs `conmon … runc create` and waits for the container's pid:
// Prepare, then Start.
func (m *Monitor) Create(ctx context.Context, o *CreateOptions) (*Created, error) {
	p, err := m.Prepare(o)
	if err != nil {
		return nil, err
	}
	return p.Start(ctx)
}

// Pending is a conmon started and held at its start pipe: it has parsed
// its arguments and sits in its cgroup, but has not looked at the bundle
// yet. Starting conmon this early lets its exec, dynamic linking and
// cgroup move overlap the caller's own preparation (writable layer,
// spec); Start then only releases it.
type Pending struct {
	m       *Monitor
	cmd     *exec.Cmd
	syncP   *os.File
	startP  *os.File
	errR    *os.File
	pidFile string
	id      string
}

// Prepare starts conmon for o, moves it into o.Cgroup and leaves it
// waiting. The bundle directory must exist; its config.json need not
// yet. Call Start or Abort.
//
// The protocol (conmon-protocol.md): conmon gets a sync and a start
// socketpair as fds 3 and 4; it blocks reading the start pipe until
// berth has moved it into its cgroup and written one byte; its launcher
// then forks the real conmon, writes the conmon pid file and exits; the
// real conmon runs runc and reports the container pid, or runc's error
// text, on the sync pipe.
func (m *Monitor) Prepare(o *CreateOptions) (_ *Pending, err error) {
	if o.Owner != nil {
		o.Owner.Claim(o.ID)
	}
	syncP, syncC, err := socketpair("sync")
	if err != nil {
		return nil, err
	}
	startP, startC, err := socketpair("start")
	if err != nil {
		syncP.Close()
		syncC.Close()
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		for _, f := range []*os.File{syncP, syncC, startP, startC} {
			f.Close()
		}
		return nil, fmt.Errorf("conmon stderr pipe: %w", err)
	}
	p := &Pending{m: m, syncP: syncP, startP: startP, errR: errR, pidFile: filepath.Join(o.Bundle, ConmonPidFile), id: o.ID}
	cmd := exec.Command(m.cfg.Conmon, m.createArgs(o)...)
	cmd.Dir = o.Bundle
	cmd.Env = []string{"PATH=" + conmonPath, "_OCI_SYNCPIPE=3", "_OCI_STARTPIPE=4"}
	cmd.ExtraFiles = []*os.File{syncC, startC}
	cmd.Stderr = errW
	// Its own process group: a signal to berthd's group (a Ctrl-C on a
	// foreground berthd) must not reach conmon or the containers.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	syncC.Close()
	startC.Close()
	errW.Close()
	if err != nil {
		p.close()
		return nil, fmt.Errorf("start conmon: %w", err)
	}
	p.cmd = cmd
	if o.Cgroup != nil {
		if err := o.Cgroup.Enter(cmd.Process.Pid); err != nil {
			p.Abort()
			return nil, fmt.Errorf("move conmon to its cgroup: %w", err)
		}
	}
	return p, nil
}

func (p *Pending) close() {
	p.syncP.Close()
	p.startP.Close()
	p.errR.Close()
}

// Abort ends a conmon that was not started (or whose start failed):
// the launcher, and the real conmon if it got that far.
func (p *Pending) Abort() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	if pid, err := readPidFile(p.pidFile); err == nil {
		if c, err := NewProc(pid); err == nil {
			_ = c.Signal(unix.SIGKILL)
			waitGone(c)
		}
	}
	p.close()
}

// Start releases conmon and waits for the container's pid. On error
// nothing conmon started is left running, but the caller still owes a
// `runc delete --force` for the runtime's own state.
func (p *Pending) Start(ctx context.Context) (_ *Created, err error) {
	ctx, span := tracing.Start(ctx, "conmon: runc create", attribute.String("container.id", p.id))
	defer func() { tracing.End(span, err) }()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCreateTimeout)
		defer cancel()
	}
	m := p.m
	if _, err := p.startP.Write([]byte{0}); err != nil {
		p.Abort()
		return nil, fmt.Errorf("release conmon: %w", err)
	}
	if err := p.cmd.Wait(); err != nil {
		msg := stderrText(p.errR)
		p.Abort()
		return nil, fmt.Errorf("conmon failed: %w: %s", err, msg)
	}
	defer p.close()
	pid, err := readPidFile(p.pidFile)
	if err != nil {
		return nil, fmt.Errorf("conmon pid file: %w", err)
	}
	conmon, err := NewProc(pid)
	if err != nil {
		// Exited already: it reports on the sync pipe before it goes.
		conmon = Proc{PID: pid}
	}
	m.reaper.adopt(pid, func(unix.WaitStatus) { m.router.route(Notice{ID: p.id, ConmonGone: true}) })

	msg, err := readSync(ctx, p.syncP)
	if err != nil {
		_ = conmon.Signal(unix.SIGKILL)
		waitGone(conmon)
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("conmon exited without reporting a pid (runtime failed silently?): %s", stderrText(p.errR))
		}
		return nil, err
	}
	if msg.Pid <= 0 {
		// conmon exits right after reporting; once it is gone its cgroup
		// can be removed by the caller's cleanup.
		waitGone(conmon)
		// conmon passes on the runtime's stderr: keep the line that says
		// what failed ("runc create failed: …"), not its warnings.
		return nil, fmt.Errorf("%s: %w", runtimeMessage(msg.Message), errdefs.ErrFailedPrecondition)
	}
	ctr, err := NewProc(msg.Pid)
	if err != nil {
		// It may already have exited; conmon will write the exit file.
		ctr = Proc{PID: msg.Pid}
	}
	return &Created{Conmon: conmon, Container: ctr}, nil
}

// conmonPath is the PATH conmon and the runtime get.
const conmonPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// createArgs is conmon's command line; each flag exists in conmon 2.1.6
// (Debian 12) and later.
func (m *Monitor) createArgs(o *CreateOptions) []string {
	args := []string{
		"-b", o.Bundle,
		"-c", o.ID,
		"-u", o.ID,
		"-n", o.Name,
		"-r", o.Runtime.Path,
		"--exit-dir", m.cfg.ExitDir,
		"--persist-dir", o.PersistDir,
		"-P", filepath.Join(o.Bundle, ConmonPidFile),
		"-p", filepath.Join(o.Bundle, PidFile),
		"-l", "k8s-file:" + o.LogPath,
		"--log-level", m.logLevel(),
		"--socket-dir-path", m.cfg.AttachDir,
	}
	args = append(args, o.Runtime.conmonArgs()...)
	if o.LogSizeMax > 0 {
		args = append(args, "--log-size-max", strconv.FormatInt(o.LogSizeMax, 10))
	}
	switch {
	case o.Terminal:
		args = append(args, "-t")
	case o.Stdin:
		args = append(args, "-i")
		if !o.StdinOnce {
			args = append(args, "--leave-stdin-open")
		}
	}
	return args
}

func (m *Monitor) logLevel() string {
	switch m.cfg.LogLevel {
	case "debug", "info", "warn", "error":
		return m.cfg.LogLevel
	}
	return "warn"
}

// readSync decodes conmon's one sync message, or gives up when ctx ends.
func readSync(ctx context.Context, f *os.File) (*syncMessage, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = f.SetReadDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Now()) })
	defer stop()
	var msg syncMessage
	if err := json.NewDecoder(f).Decode(&msg); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("waiting for conmon to report the container pid: %w", ctx.Err())
			}
			return nil, fmt.Errorf("container create timed out: %w", errdefs.ErrDeadlineExceeded)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("read conmon's sync message: %w", err)
	}
	return &msg, nil
}

// socketpair makes a sync or start pair: the parent end non-blocking
// (so reads honour deadlines), the child end blocking as conmon expects.
func socketpair(what string) (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_LOCAL, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("%s socketpair: %w", what, err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("%s socketpair: %w", what, err)
	}
	return os.NewFile(uintptr(fds[0]), what+"-parent"), os.NewFile(uintptr(fds[1]), what+"-child"), nil
}

// stderrText reads what conmon printed before it failed, without
// blocking on a pipe some process still holds open.
func stderrText(r *os.File) string {
	_ = r.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	b, _ := io.ReadAll(io.LimitReader(r, 8192))
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "(no output)"
	}
	return s
}

// waitGone waits (briefly) for a failed conmon to exit.
func waitGone(p Proc) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.WaitExit(ctx)
}
