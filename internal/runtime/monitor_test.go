package runtime

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	ociv1 "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/spec"
)

const (
	conmonBin = "/usr/bin/conmon"
	runcBin   = "/usr/sbin/runc"
	busybox   = "/bin/busybox"
)

// env is one monitor with its directories, plus an exit log the tests
// wait on.
type env struct {
	t       *testing.T
	dir     string
	mon     *Monitor
	owner   *Owner
	runtime OCI
	host    *spec.Host

	mu    sync.Mutex
	exits map[string]chan struct{}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, b := range []string{conmonBin, runcBin, busybox} {
		if _, err := os.Stat(b); err != nil {
			t.Skipf("needs %s", b)
		}
	}
}

func newEnv(t *testing.T) *env {
	needRoot(t)
	dir, err := os.MkdirTemp("", "bm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.RemoveAll(dir)
		// runc leaves the parent cgroup it made for the test containers.
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/berth-test")
		for _, d := range dirs {
			os.Remove(d)
		}
	})
	host, err := spec.ProbeHost()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, host: host, exits: map[string]chan struct{}{},
		runtime: OCI{Path: runcBin, Root: filepath.Join(dir, "runc")}}
	// As berthd: conmons reparent to the test process, which reaps them.
	sigs, err := BecomeSubreaper()
	if err != nil {
		t.Fatal(err)
	}
	e.mon, err = New(Config{
		ChildSignals: sigs,
		Conmon:       conmonBin,
		ExitDir:      filepath.Join(dir, "exits"),
		AttachDir:    filepath.Join(dir, "attach"),
		Log:          slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.owner = e.mon.NewOwner()
	go func() {
		for n := range e.owner.C {
			if !n.ConmonGone {
				e.onExit(n.ID)
			}
		}
	}()
	t.Cleanup(func() { e.mon.Close() })
	return e
}

func (e *env) exitCh(id string) chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	ch, ok := e.exits[id]
	if !ok {
		ch = make(chan struct{})
		e.exits[id] = ch
	}
	return ch
}

func (e *env) onExit(id string) {
	ch := e.exitCh(id)
	e.mu.Lock()
	defer e.mu.Unlock()
	select {
	case <-ch:
	default:
		close(ch)
	}
}

func (e *env) waitExit(id string, d time.Duration) {
	e.t.Helper()
	select {
	case <-e.exitCh(id):
	case <-time.After(d):
		e.t.Fatalf("no exit event for %s within %v", id, d)
	}
}

// busyboxRootfs makes a rootfs holding only a static busybox.
func busyboxRootfs(t *testing.T, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "sleep", "echo", "cat", "true", "id", "yes", "head", "trap"} {
		_ = os.Symlink("busybox", filepath.Join(root, "bin", a))
	}
	_ = os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	return root
}

type ctr struct {
	id, bundle, persist, log string
	created                  *Created
	process                  *specs.Process
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// create makes a bundle running args under conmon.
func (e *env) create(args []string, mutate func(*runtimeapi.ContainerConfig)) (*ctr, error) {
	t := e.t
	id := newID()
	c := &ctr{id: id, bundle: filepath.Join(e.dir, "b-"+id), persist: filepath.Join(e.dir, "p-"+id), log: filepath.Join(e.dir, "logs", id+".log")}
	for _, d := range []string{c.bundle, c.persist, filepath.Dir(c.log)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	cfg := &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "t"}, Command: args}
	if mutate != nil {
		mutate(cfg)
	}
	res, err := spec.Generate(&spec.Input{
		ID: id, Config: cfg, Image: ociv1.ImageConfig{},
		Sandbox: spec.Sandbox{ID: "pod", CgroupParent: "/berth-test"},
		RootFS:  busyboxRootfs(t, c.bundle),
		Host:    e.host,
		Options: spec.Options{DefaultCaps: []string{"CHOWN", "KILL", "SETUID", "SETGID"}, CgroupManager: "cgroupfs"},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.process = res.Spec.Process
	data, _ := json.Marshal(res.Spec)
	if err := os.WriteFile(filepath.Join(c.bundle, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.runtime.Delete(context.Background(), id, true)
		if c.created != nil {
			_ = c.created.Conmon.Signal(unix.SIGKILL)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t0 := time.Now()
	defer func() { t.Logf("monitor.Create took %v", time.Since(t0)) }()
	c.created, err = e.mon.Create(ctx, &CreateOptions{
		ID: id, Name: "t", Bundle: c.bundle, PersistDir: c.persist, LogPath: c.log, Runtime: e.runtime, Owner: e.owner,
	})
	return c, err
}

func (e *env) mustCreate(args ...string) *ctr {
	e.t.Helper()
	c, err := e.create(args, nil)
	if err != nil {
		e.t.Fatalf("create: %v", err)
	}
	return c
}

var logLine = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}[+-]\d\d:\d\d (stdout|stderr) (P|F) (.*)$`)

func readLog(t *testing.T, p string) []string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if !logLine.MatchString(sc.Text()) {
			t.Fatalf("log line %q is not in CRI format", sc.Text())
		}
		lines = append(lines, sc.Text())
	}
	return lines
}

func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.mustCreate("sh", "-c", "echo out; echo err >&2; exit 3")
	if !c.created.Conmon.Alive() {
		t.Fatal("conmon is not alive after create")
	}
	st, err := e.runtime.State(ctx, c.id)
	if err != nil || st.Status != "created" || st.Pid != c.created.Container.PID {
		t.Fatalf("state %+v, %v", st, err)
	}
	if err := e.runtime.Start(ctx, c.id); err != nil {
		t.Fatal(err)
	}
	e.waitExit(c.id, 10*time.Second)
	ex, err := ReadExit(c.persist)
	if err != nil || ex.Code != 3 || ex.OOMKilled {
		t.Fatalf("exit %+v, %v", ex, err)
	}
	lines := readLog(t, c.log)
	joined := strings.Join(lines, "\n")
	if len(lines) != 2 || !strings.Contains(joined, "stdout F out") || !strings.Contains(joined, "stderr F err") {
		t.Fatalf("log:\n%s", joined)
	}
	if err := c.created.Conmon.WaitExit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.runtime.Delete(ctx, c.id, false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.runtime.State(ctx, c.id); !errors.Is(err, ErrNotExist) {
		t.Fatalf("state after delete: %v", err)
	}
	e.mon.ClearExit(c.id)
}

func TestCreateFailureCarriesRuntimeMessage(t *testing.T) {
	e := newEnv(t)
	_, err := e.create([]string{"/no/such/binary"}, nil)
	if err == nil || !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "no/such/binary") {
		t.Fatalf("create error %v", err)
	}
}

func TestKillAndSignals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// A process ignoring SIGTERM dies only by SIGKILL: 137.
	c := e.mustCreate("sh", "-c", "trap '' TERM; echo ready; while true; do sleep 0.1; done")
	if err := e.runtime.Start(ctx, c.id); err != nil {
		t.Fatal(err)
	}
	if err := c.created.Container.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.exitCh(c.id):
		t.Fatal("exited on SIGTERM")
	case <-time.After(300 * time.Millisecond):
	}
	if err := c.created.Container.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.waitExit(c.id, 10*time.Second)
	if ex, err := ReadExit(c.persist); err != nil || ex.Code != 137 {
		t.Fatalf("exit %+v, %v", ex, err)
	}
	// Signalling a gone process (or a recycled pid) is a no-op.
	if err := c.created.Container.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if (Proc{PID: c.created.Conmon.PID, StartTime: 1}).Alive() {
		t.Fatal("a wrong start time counts as alive")
	}
}

func TestExecSync(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.mustCreate("sleep", "1000")
	if err := e.runtime.Start(ctx, c.id); err != nil {
		t.Fatal(err)
	}
	p := *c.process
	p.Args = []string{"sh", "-c", "echo hello; echo oops >&2; exit 7"}
	start := time.Now()
	res, err := e.runtime.ExecSync(ctx, c.id, &p, 0, 1<<20)
	t.Logf("exec sync took %v", time.Since(start))
	if err != nil || string(res.Stdout) != "hello\n" || string(res.Stderr) != "oops\n" || res.ExitCode != 7 {
		t.Fatalf("exec %+v, %v", res, err)
	}
	// Output is capped, and the command still finishes.
	p.Args = []string{"sh", "-c", "yes | head -c 300000"}
	res, err = e.runtime.ExecSync(ctx, c.id, &p, 0, 1000)
	if err != nil || len(res.Stdout) != 1000 || !res.Truncated || res.ExitCode != 0 {
		t.Fatalf("capped exec: %d bytes, %+v, %v", len(res.Stdout), res.Truncated, err)
	}
	// The cap holds for both streams together.
	p.Args = []string{"sh", "-c", "yes out | head -c 300000 & yes err | head -c 300000 >&2; wait"}
	res, err = e.runtime.ExecSync(ctx, c.id, &p, 0, 1000)
	if err != nil || len(res.Stdout)+len(res.Stderr) != 1000 || !res.Truncated {
		t.Fatalf("capped exec on two streams: %d+%d bytes, %+v, %v", len(res.Stdout), len(res.Stderr), res.Truncated, err)
	}
	// A timeout kills the command (and its children) and returns
	// normally with a non-zero code.
	p.Args = []string{"sh", "-c", "sleep 101 & sleep 101"}
	start = time.Now()
	res, err = e.runtime.ExecSync(ctx, c.id, &p, time.Second, 1000)
	if took := time.Since(start); err != nil || !res.TimedOut || res.ExitCode == 0 || took > 2*time.Second {
		t.Fatalf("timed out exec %+v, %v after %v", res, err, took)
	}
	// Nothing of it is left in the container.
	out, _ := exec.Command("sh", "-c", "ps -eo stat,args | grep -v grep | grep -c '^[^ ]* sleep 101'").Output()
	if strings.TrimSpace(string(out)) != "0" {
		t.Fatalf("timed-out exec left %s processes", out)
	}
	// A command in a container that does not run is an error or a failure.
	res, err = e.runtime.ExecSync(ctx, "nope", &p, time.Second, 1000)
	if err == nil && res.ExitCode == 0 {
		t.Fatal("exec in a missing container succeeded")
	}
}

func TestReopenLog(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.mustCreate("sh", "-c", "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.05; done")
	if err := e.runtime.Start(ctx, c.id); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	rotated := c.log + ".1"
	if err := os.Rename(c.log, rotated); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := ReopenLog(rctx, c.bundle, c.log, c.created.Conmon); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if len(readLog(t, rotated)) == 0 || len(readLog(t, c.log)) == 0 {
		t.Fatal("output did not continue in the new file")
	}
	_ = c.created.Container.Signal(unix.SIGKILL)
	e.waitExit(c.id, 10*time.Second)
	if err := ReopenLog(rctx, c.bundle, c.log, c.created.Conmon); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("reopen with conmon gone: %v", err)
	}
}

// conmon is reaped by berthd (the subreaper), never left a zombie.
func TestConmonReaped(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.mustCreate("true")
	if err := e.runtime.Start(ctx, c.id); err != nil {
		t.Fatal(err)
	}
	e.waitExit(c.id, 10*time.Second)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.created.Conmon.WaitExit(wctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := readStat(c.created.Conmon.PID); err != nil {
			break // reaped
		}
		if time.Now().After(deadline) {
			st, _ := readStat(c.created.Conmon.PID)
			t.Fatalf("conmon %d not reaped: state %c", c.created.Conmon.PID, st.state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A container whose conmon was killed is reparented to berthd (the
// subreaper) and, once it exits, reaped: the sweep finds it among the
// main thread's children, though no one adopted it.
func TestOrphanedContainerReaped(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.mustCreate("sleep", "100")
	if err := e.runtime.Start(ctx, c.id); err != nil {
		t.Fatal(err)
	}
	init := c.created.Container.PID
	if err := unix.Kill(c.created.Conmon.PID, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := readStat(init)
		if err != nil {
			t.Fatalf("container init %d gone before it was killed: %v", init, err)
		}
		if st.ppid == os.Getpid() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container init %d not reparented to the test (ppid %d)", init, st.ppid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := unix.Kill(init, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		st, err := readStat(init)
		if err != nil {
			return // reaped
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphaned container init %d not reaped: state %c", init, st.state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The cost of one container cycle through conmon, for the record.
func TestCycleTiming(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i := range 5 {
		t0 := time.Now()
		c := e.mustCreate("sleep", "100")
		t1 := time.Now()
		if err := e.runtime.Start(ctx, c.id); err != nil {
			t.Fatal(err)
		}
		t2 := time.Now()
		_ = c.created.Container.Signal(unix.SIGKILL)
		e.waitExit(c.id, 10*time.Second)
		t3 := time.Now()
		if err := e.runtime.Delete(ctx, c.id, false); err != nil {
			t.Fatal(err)
		}
		t4 := time.Now()
		t.Logf("cycle %d: create %v start %v stop %v delete %v total %v", i, t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), t4.Sub(t3), t4.Sub(t0))
	}
}
