package runtime

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The exit watcher sees conmon's temp-name-then-rename pattern as one
// exit of the right id, ignores other names, and rescans on demand.
func TestExitWatcher(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	got := map[string]int{}
	seen := make(chan string, 10)
	m, err := New(Config{Conmon: "/bin/true", ExitDir: filepath.Join(dir, "exits"), AttachDir: filepath.Join(dir, "attach"),
		Log: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	owner := m.NewOwner()
	owner.Claim("abc123")
	go func() {
		for n := range owner.C {
			mu.Lock()
			got[n.ID]++
			mu.Unlock()
			seen <- n.ID
		}
	}()
	exits := filepath.Join(dir, "exits")
	// GLib's g_file_set_contents: write "<id>.XXXXXX", rename to "<id>".
	tmp := filepath.Join(exits, "abc123.Q1W2E3")
	if err := os.WriteFile(tmp, []byte("0"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(exits, "abc123")); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-seen:
		if id != "abc123" {
			t.Fatalf("exit for %q", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no exit reported")
	}
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	if len(got) != 1 {
		t.Fatalf("reported %v", got)
	}
	mu.Unlock()
	if p := m.PendingExits(); len(p) != 1 || p[0] != "abc123" {
		t.Fatalf("pending %v", p)
	}
	m.ClearExit("abc123")
	m.ClearExit("../escape")
	if p := m.PendingExits(); len(p) != 0 {
		t.Fatalf("pending after clear %v", p)
	}
}

func TestReadExit(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadExit(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing exit file: %v", err)
	}
	for content, want := range map[string]int32{"0": 0, "137": 137, "-1": -1, "3\n": 3} {
		if err := os.WriteFile(filepath.Join(dir, ExitFile), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		ex, err := ReadExit(dir)
		if err != nil || ex.Code != want || ex.OOMKilled || time.Since(ex.At) > time.Minute {
			t.Fatalf("%q: %+v %v", content, ex, err)
		}
	}
	_ = os.WriteFile(filepath.Join(dir, OOMFile), nil, 0o644)
	if ex, _ := ReadExit(dir); !ex.OOMKilled {
		t.Fatal("oom file not seen")
	}
	_ = os.WriteFile(filepath.Join(dir, ExitFile), []byte("garbage"), 0o644)
	if _, err := ReadExit(dir); err == nil {
		t.Fatal("garbage accepted")
	}
}

func TestProcIdentity(t *testing.T) {
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p, err := NewProc(cmd.Process.Pid)
	if err != nil || !p.Alive() {
		t.Fatalf("%+v %v", p, err)
	}
	if (Proc{PID: p.PID, StartTime: p.StartTime + 1}).Alive() {
		t.Fatal("a different start time is alive")
	}
	done := make(chan error, 1)
	go func() { done <- p.WaitExit(context.Background()) }()
	if err := p.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitExit did not return")
	}
	if p.Alive() {
		t.Fatal("a zombie counts as alive")
	}
	_ = cmd.Wait()
	if err := p.Signal(unix.SIGKILL); err != nil {
		t.Fatalf("signal to a gone process: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	self, _ := NewProc(os.Getpid())
	if err := self.WaitExit(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitExit on a live process: %v", err)
	}
}

func TestReadStatOddNames(t *testing.T) {
	// A command name with spaces and parentheses must not shift fields.
	exe := filepath.Join(t.TempDir(), "a b) (c")
	data, _ := os.ReadFile("/bin/sleep")
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "10")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	st, err := readStat(cmd.Process.Pid)
	if err != nil || st.ppid != os.Getpid() || st.startTime == 0 || st.state == 0 {
		t.Fatalf("%+v %v", st, err)
	}
}

func TestRuntimeMessage(t *testing.T) {
	in := `time="2026-01-01T00:00:00Z" level=warning msg="something"
time="2026-01-01T00:00:00Z" level=error msg="container \"x\" does not exist"`
	if got := runtimeMessage(in); got != `container "x" does not exist` {
		t.Fatalf("%q", got)
	}
	// runc's create failure on a cgroup v1 host: warnings around the error.
	in = `time="2026-01-01T00:00:00Z" level=warning msg="cannot toggle freezer: cgroups not configured for container"
time="2026-01-01T00:00:00Z" level=error msg="runc create failed: unable to start container process: exec: \"/nosuch\": stat /nosuch: no such file or directory"
time="2026-01-01T00:00:00Z" level=warning msg="unable to get oom kill count" error="openat2 /sys/fs/cgroup/x/memory.events: no such file or directory"`
	if got := runtimeMessage(in); got != `runc create failed: unable to start container process: exec: "/nosuch": stat /nosuch: no such file or directory` {
		t.Fatalf("%q", got)
	}
	in = `time="2026-01-01T00:00:00Z" level=warning msg="only a warning" error="detail"`
	if got := runtimeMessage(in); got != "only a warning" {
		t.Fatalf("%q", got)
	}
	if got := runtimeMessage("plain error\n"); got != "plain error" {
		t.Fatalf("%q", got)
	}
	if got := runtimeMessage(""); got != "(no output)" {
		t.Fatalf("%q", got)
	}
}

func TestCreateArgs(t *testing.T) {
	m := &Monitor{cfg: Config{ExitDir: "/run/b/exits", AttachDir: "/run/b/attach", LogLevel: "verbose"}}
	args := m.createArgs(&CreateOptions{ID: "id", Name: "n", Bundle: "/b", PersistDir: "/p", LogPath: "/l/x.log",
		Runtime: OCI{Path: "/usr/sbin/runc", Root: "/run/runc"}, Stdin: true, LogSizeMax: 8192})
	want := "-b /b -c id -u id -n n -r /usr/sbin/runc --exit-dir /run/b/exits --persist-dir /p -P /b/conmon-pidfile " +
		"-p /b/pidfile -l k8s-file:/l/x.log --log-level warn --socket-dir-path /run/b/attach --runtime-arg --root=/run/runc " +
		"--log-size-max 8192 -i --leave-stdin-open"
	if got := join(args); got != want {
		t.Fatalf("args\n%s\nwant\n%s", got, want)
	}
}

func join(s []string) string {
	out := ""
	for i, a := range s {
		if i > 0 {
			out += " "
		}
		out += a
	}
	return out
}

func TestConmonID(t *testing.T) {
	dir := t.TempDir()
	if id, ok := parseConmonArgs([][]byte{[]byte("/usr/bin/conmon"), []byte("-b"), []byte("/x"), []byte("-c"), []byte("abc"), []byte("--exit-dir"), []byte(dir)}, dir); !ok || id != "abc" {
		t.Fatalf("got %q %v", id, ok)
	}
	if _, ok := parseConmonArgs([][]byte{[]byte("/usr/bin/conmon"), []byte("-c"), []byte("abc"), []byte("--exit-dir"), []byte("/other")}, dir); ok {
		t.Fatal("other exit dir matched")
	}
	if _, ok := parseConmonArgs([][]byte{[]byte("/bin/sleep"), []byte("-c"), []byte("abc"), []byte("--exit-dir=" + dir)}, dir); ok {
		t.Fatal("not conmon matched")
	}
}
