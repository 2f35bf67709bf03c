package stream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"k8s.io/client-go/tools/remotecommand"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	utilexec "k8s.io/utils/exec"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/testutil"
)

// execURL asks the server for an exec URL.
func execURL(t *testing.T, s *Server, req *runtimeapi.ExecRequest) string {
	t.Helper()
	resp, err := s.GetExec(req)
	if err != nil {
		t.Fatalf("GetExec: %v", err)
	}
	return resp.Url
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ee utilexec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("not an exit error: %v", err)
	}
	return ee.ExitStatus()
}

func TestExecPipes(t *testing.T) {
	needTools(t)
	s, ctrs := newTestServer(t, nil)
	tg := runDetached(t, []string{"sleep", "1000"}, nil)
	ctrs.set("c1", tg)
	ctx := t.Context()

	var out, errb bytes.Buffer
	u := execURL(t, s, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, Stdout: true, Stderr: true})
	err := testutil.StreamSPDY(ctx, u, remotecommand.StreamOptions{Stdout: &out, Stderr: &errb})
	if got := exitCode(t, err); got != 3 {
		t.Errorf("exit code %d, want 3", got)
	}
	if out.String() != "out\n" || errb.String() != "err\n" {
		t.Errorf("stdout %q stderr %q", out.String(), errb.String())
	}

	out.Reset()
	u = execURL(t, s, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"cat"}, Stdin: true, Stdout: true})
	if err := testutil.StreamSPDY(ctx, u, remotecommand.StreamOptions{Stdin: strings.NewReader("hello\nworld\n"), Stdout: &out}); err != nil {
		t.Fatalf("cat: %v", err)
	}
	if out.String() != "hello\nworld\n" {
		t.Errorf("cat echoed %q", out.String())
	}

	// Tokens are single use.
	if err := testutil.StreamSPDY(ctx, u, remotecommand.StreamOptions{Stdout: io.Discard}); err == nil {
		t.Error("a used token worked again")
	}
}

func TestExecMissingOrNotExecutable(t *testing.T) {
	needTools(t)
	s, ctrs := newTestServer(t, nil)
	ctrs.set("c1", runDetached(t, []string{"sleep", "1000"}, nil))
	for _, tc := range []struct {
		cmd  string
		code int
		text string
	}{
		{"nosuch", 127, "executable file not found"},
		{"/no/such/file", 127, "no such file or directory"},
		{"/etc/noexec", 126, "permission denied"},
	} {
		var errb bytes.Buffer
		u := execURL(t, s, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{tc.cmd}, Stdout: true, Stderr: true})
		err := testutil.StreamSPDY(t.Context(), u, remotecommand.StreamOptions{Stdout: io.Discard, Stderr: &errb})
		if got := exitCode(t, err); got != tc.code {
			t.Errorf("%s: exit code %d, want %d (%v)", tc.cmd, got, tc.code, err)
		}
		if !strings.Contains(errb.String(), tc.text) {
			t.Errorf("%s: stderr %q lacks %q", tc.cmd, errb.String(), tc.text)
		}
	}
}

// The exec'd command gets the container process's user, env, cwd,
// capabilities and no-new-privs.
func TestExecProcessSettings(t *testing.T) {
	needTools(t)
	s, ctrs := newTestServer(t, nil)
	tg := runDetached(t, []string{"sleep", "1000"}, func(sp *specs.Spec) {
		sp.Process.User = specs.User{UID: 1000, GID: 1000}
		sp.Process.Cwd = "/home/app"
		sp.Process.NoNewPrivileges = true
		sp.Process.Capabilities.Ambient = []string{"CAP_NET_BIND_SERVICE"}
		sp.Process.Capabilities.Inheritable = []string{"CAP_NET_BIND_SERVICE"}
	})
	ctrs.set("c1", tg)
	var out bytes.Buffer
	u := execURL(t, s, &runtimeapi.ExecRequest{ContainerId: "c1", Stdout: true, Cmd: []string{"sh", "-c",
		`id -u; id -g; pwd; echo $BERTH_TEST; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status`}})
	if err := testutil.StreamSPDY(t.Context(), u, remotecommand.StreamOptions{Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 7 || lines[0] != "1000" || lines[1] != "1000" || lines[2] != "/home/app" || lines[3] != "yes" {
		t.Fatalf("exec'd process: %q", out.String())
	}
	// Compare with the container's init, as the host sees it.
	st, err := exec.Command(runcPath, "--root", tg.Runtime.Root, "state", tg.ID).Output()
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSpace(strings.Split(strings.Split(string(st), `"pid": `)[1], ",")[0])
	status, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines[4:] {
		if !strings.Contains(string(status), l) {
			t.Errorf("exec has %q, init's status:\n%s", l, status)
		}
	}
}

func TestExecTTYInteractive(t *testing.T) {
	needTools(t)
	s, ctrs := newTestServer(t, nil)
	ctrs.set("c1", runDetached(t, []string{"sleep", "1000"}, nil))
	inR, inW := io.Pipe()
	var out testutil.SyncBuffer
	sizes := make(testutil.SizeQueue, 4)
	sizes <- remotecommand.TerminalSize{Width: 120, Height: 40}
	u := execURL(t, s, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"sh"}, Tty: true, Stdin: true, Stdout: true})
	done := make(chan error, 1)
	go func() {
		done <- testutil.StreamSPDY(t.Context(), u, remotecommand.StreamOptions{Stdin: inR, Stdout: &out, Tty: true, TerminalSizeQueue: sizes})
	}()
	waitFor(t, 10*time.Second, "a prompt", func() bool { return strings.Contains(out.String(), "# ") })
	io.WriteString(inW, "stty size\n")
	waitFor(t, 10*time.Second, "size 40 120", func() bool { return strings.Contains(out.String(), "40 120") })
	sizes <- remotecommand.TerminalSize{Width: 100, Height: 30}
	time.Sleep(200 * time.Millisecond)
	io.WriteString(inW, "stty size; echo $BERTH_TEST\n")
	waitFor(t, 10*time.Second, "size 30 100", func() bool { return strings.Contains(out.String(), "30 100") })
	io.WriteString(inW, "exit 7\n")
	select {
	case err := <-done:
		if got := exitCode(t, err); got != 7 {
			t.Errorf("exit code %d, want 7", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("exec did not end")
	}
	close(sizes)
	inW.Close()
}

func TestExecRefused(t *testing.T) {
	needTools(t)
	s, ctrs := newTestServer(t, nil)
	ctrs.set("stopped", runtime.ExecTarget{ID: "stopped", Running: false})
	_, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "stopped", Cmd: []string{"true"}, Stdout: true})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "not running") {
		t.Errorf("exec in a stopped container: %v", err)
	}
	_, err = s.GetExec(&runtimeapi.ExecRequest{ContainerId: "nosuch", Cmd: []string{"true"}, Stdout: true})
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("exec in an unknown container: %v", err)
	}
	_, err = s.GetExec(&runtimeapi.ExecRequest{ContainerId: "stopped", Stdout: true})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("exec without a command: %v", err)
	}
}

// sleepers counts the `sleep 999` processes on the host.
func sleepers(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if string(b) == "sleep\x00999\x00" {
			n++
		}
	}
	return n
}

// A client that goes away, a stopped container and a closing server all
// end the session and kill its process.
func TestExecSessionEnds(t *testing.T) {
	needTools(t)
	s, ctrs := newTestServer(t, nil)
	ctrs.set("c1", runDetached(t, []string{"sleep", "1000"}, nil))
	base := sleepers(t)
	start := func(ctx context.Context) chan error {
		done := make(chan error, 1)
		u := execURL(t, s, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"sleep", "999"}, Stdout: true})
		go func() { done <- testutil.StreamSPDY(ctx, u, remotecommand.StreamOptions{Stdout: io.Discard}) }()
		waitFor(t, 10*time.Second, "the exec", func() bool { return sleepers(t) == base+1 })
		return done
	}

	ctx, cancel := context.WithCancel(t.Context())
	start(ctx)
	cancel()
	waitFor(t, 10*time.Second, "the session to end after the client left", func() bool { return s.Sessions() == 0 })
	waitFor(t, 10*time.Second, "the process to die", func() bool { return sleepers(t) == base })

	done := start(t.Context())
	s.ContainerStopped("c1")
	select {
	case err := <-done:
		if got := exitCode(t, err); got != 137 {
			t.Errorf("exit code %d after the container stopped, want 137", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("exec outlived its container")
	}
	waitFor(t, 10*time.Second, "the process to die", func() bool { return sleepers(t) == base })
}

// counts are what must not grow: goroutines, open fds, child processes.
type counts struct{ goroutines, fds, children int }

func current(t *testing.T) counts {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	children := 0
	ents, _ := os.ReadDir("/proc")
	me := strconv.Itoa(os.Getpid())
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 && f[1] == me {
			children++
		}
	}
	return counts{goruntime.NumGoroutine(), len(fds), children}
}

// settled waits until the counts are back to base (with a little slack
// for goroutines the HTTP stack parks for a moment).
func settled(t *testing.T, base counts) {
	t.Helper()
	var now counts
	deadline := time.Now().Add(15 * time.Second)
	for {
		now = current(t)
		if now.goroutines <= base.goroutines+2 && now.fds <= base.fds && now.children <= base.children {
			t.Logf("before %+v, after %+v", base, now)
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := goruntime.Stack(buf, true)
			t.Fatalf("leak: before %+v, after %+v\n%s", base, now, buf[:n])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestExecNoLeaks(t *testing.T) {
	testNoLeaks(t, nil)
}

// In the host's PID namespace, what an exec leaves behind is reparented
// to the runtime and then to berthd rather than to the container's init.
func TestExecNoLeaksHostPID(t *testing.T) {
	// Like berthd: a child subreaper that reaps the orphans it gets.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	stop := reapOrphans(t)
	defer stop()
	testNoLeaks(t, func(sp *specs.Spec) {
		sp.Linux.Namespaces = slices.DeleteFunc(sp.Linux.Namespaces, func(n specs.LinuxNamespace) bool {
			return n.Type == specs.PIDNamespace
		})
	})
}

func testNoLeaks(t *testing.T, mutate func(*specs.Spec)) {
	needTools(t)
	s, ctrs := newTestServer(t, nil)
	ctrs.set("c1", runDetached(t, []string{"sleep", "1000"}, mutate))
	run := func(i int) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		switch i % 5 {
		case 0, 1: // plain, with stdin
			u := execURL(t, s, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"cat"}, Stdin: true, Stdout: true, Stderr: true})
			var out bytes.Buffer
			if err := testutil.StreamSPDY(ctx, u, remotecommand.StreamOptions{Stdin: strings.NewReader("x"), Stdout: &out, Stderr: io.Discard}); err != nil || out.String() != "x" {
				t.Fatalf("exec %d: %v %q", i, err, out.String())
			}
		case 2: // tty
			u := execURL(t, s, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"echo", "hi"}, Tty: true, Stdout: true})
			if err := testutil.StreamSPDY(ctx, u, remotecommand.StreamOptions{Stdout: io.Discard, Tty: true}); err != nil {
				t.Fatalf("exec %d: %v", i, err)
			}
		case 3: // missing binary
			u := execURL(t, s, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"nosuch"}, Stdout: true, Stderr: true})
			_ = testutil.StreamSPDY(ctx, u, remotecommand.StreamOptions{Stdout: io.Discard, Stderr: io.Discard})
		case 4: // the client leaves mid-stream
			u := execURL(t, s, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"sh", "-c", "echo go; sleep 30"}, Stdout: true})
			r, w := io.Pipe()
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = testutil.StreamSPDY(ctx, u, remotecommand.StreamOptions{Stdout: w})
				w.Close()
			}()
			buf := make([]byte, 3)
			_, _ = io.ReadFull(r, buf)
			cancel()
			go io.Copy(io.Discard, r)
			<-done
		}
	}
	run(0) // warm up: first use starts the HTTP machinery
	run(2)
	base := current(t)
	for i := range 50 {
		run(i)
	}
	waitFor(t, 10*time.Second, "sessions to end", func() bool { return s.Sessions() == 0 })
	settled(t, base)
}

// Closing the server ends running sessions and kills their processes.
func TestCloseEndsSessions(t *testing.T) {
	needTools(t)
	ctrs := &fakeContainers{m: map[string]runtime.ExecTarget{}}
	s, err := New(Config{Address: "127.0.0.1", Port: "0", WorkDir: t.TempDir()}, ctrs, nil, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctrs.set("c1", runDetached(t, []string{"sleep", "1000"}, nil))
	base := sleepers(t)
	u := execURL(t, s, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"sleep", "999"}, Stdout: true})
	done := make(chan error, 1)
	go func() { done <- testutil.StreamSPDY(t.Context(), u, remotecommand.StreamOptions{Stdout: io.Discard}) }()
	waitFor(t, 10*time.Second, "the exec", func() bool { return sleepers(t) == base+1 })
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("close took %v", d)
	}
	if n := sleepers(t); n != base {
		t.Errorf("%d exec processes left after close", n-base)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the client was not disconnected")
	}
}

// berthd reaps zombie children outside its session (orphans reparented to
// it), so exec must keep its runtime processes in berthd's session, or
// their exit status could be taken from it.
func TestExecStaysInSession(t *testing.T) {
	needTools(t)
	s, ctrs := newTestServer(t, nil)
	ctrs.set("c1", runDetached(t, []string{"sleep", "1000"}, nil))
	sid, err := unix.Getsid(0)
	if err != nil {
		t.Fatal(err)
	}
	me := strconv.Itoa(os.Getpid())
	// children lists our runtime children as "pid session".
	children := func() []string {
		var out []string
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
			if err != nil {
				continue
			}
			// state ppid pgrp session
			f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
			cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if len(f) >= 4 && f[1] == me && strings.HasPrefix(string(cmd), runcPath+"\x00") {
				out = append(out, e.Name()+" "+f[3])
			}
		}
		return out
	}
	for _, tty := range []bool{false, true} {
		u := execURL(t, s, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"sh", "-c", "sleep 1; exit 5"}, Tty: tty, Stdout: true})
		done := make(chan error, 1)
		go func() {
			done <- testutil.StreamSPDY(t.Context(), u, remotecommand.StreamOptions{Stdout: io.Discard, Tty: tty})
		}()
		waitFor(t, 10*time.Second, "the runtime process", func() bool { return len(children()) > 0 })
		for _, c := range children() {
			if f := strings.Fields(c); f[1] != strconv.Itoa(sid) {
				t.Errorf("tty %v: child %s is in session %s, not berthd's %d", tty, f[0], f[1], sid)
			}
		}
		if got := exitCode(t, <-done); got != 5 {
			t.Errorf("tty %v: exit code %d, want 5", tty, got)
		}
	}
}

// reapOrphans reaps, as berthd's reaper does, zombie children outside our
// session: orphans reparented to us.
func reapOrphans(t *testing.T) (stop func()) {
	sid, err := unix.Getsid(0)
	if err != nil {
		t.Fatal(err)
	}
	me := strconv.Itoa(os.Getpid())
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			ents, _ := os.ReadDir("/proc")
			for _, e := range ents {
				b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
				if err != nil {
					continue
				}
				f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
				if len(f) < 4 || f[1] != me || f[0] != "Z" || f[3] == strconv.Itoa(sid) {
					continue
				}
				pid, _ := strconv.Atoi(e.Name())
				var ws unix.WaitStatus
				_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}
