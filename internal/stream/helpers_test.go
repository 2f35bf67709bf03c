package stream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-cri/berth/internal/errdefs"
)

const runcPath = "/usr/sbin/runc"

// needTools skips unless the test can run real containers.
func needTools(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, p := range []string{runcPath, "/bin/busybox"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("needs %s", p)
		}
	}
}

// fakeContainers is a ContainerLookup over a map.
type fakeContainers struct {
	mu sync.Mutex
	m  map[string]runtime.ExecTarget
}

func (f *fakeContainers) ExecTarget(id string) (runtime.ExecTarget, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.m[id]
	if !ok {
		return runtime.ExecTarget{}, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return t, nil
}

func (f *fakeContainers) set(id string, t runtime.ExecTarget) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[id] = t
}

// fakePods maps pod ids to netns paths.
type fakePods map[string]string

func (f fakePods) NetNSPath(id string) (string, error) {
	p, ok := f[id]
	if !ok {
		return "", fmt.Errorf("pod %q: %w", id, errdefs.ErrNotFound)
	}
	return p, nil
}

func testLogger() *slog.Logger {
	if os.Getenv("STREAM_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newTestServer starts a server on 127.0.0.1 and closes it at cleanup.
func newTestServer(t *testing.T, pods fakePods) (*Server, *fakeContainers) {
	t.Helper()
	ctrs := &fakeContainers{m: map[string]runtime.ExecTarget{}}
	s, err := New(Config{Address: "127.0.0.1", Port: "0", WorkDir: t.TempDir()}, ctrs, pods, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s, ctrs
}

// bundle writes a busybox rootfs and a config.json running args; mutate
// may adjust the spec.
func bundle(t *testing.T, dir string, args []string, tty bool, mutate func(*specs.Spec)) {
	t.Helper()
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc", "www", "home/app"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" {
			if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil && !os.IsExist(err) {
				t.Fatal(err)
			}
		}
	}
	files := map[string]string{
		"etc/passwd":     "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
		"etc/group":      "root:x:0:\napp:x:1000:\n",
		"www/index.html": "hello from the pod\n",
		"etc/noexec":     "not a program\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(runcPath, "spec", "--bundle", dir).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v\n%s", err, out)
	}
	var spec specs.Spec
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	spec.Root.Readonly = false
	spec.Process.Args = args
	spec.Process.Terminal = tty
	spec.Process.Env = append(spec.Process.Env, "BERTH_TEST=yes")
	if mutate != nil {
		mutate(&spec)
	}
	if b, err = json.Marshal(&spec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// testID is a container id unique to this test process.
func testID(t *testing.T) string {
	return fmt.Sprintf("bst%d-%d", os.Getpid(), time.Now().UnixNano()%1e9)
}

// runDetached starts a container with `runc run -d` (no conmon) and
// removes it at cleanup.
func runDetached(t *testing.T, args []string, mutate func(*specs.Spec)) runtime.ExecTarget {
	t.Helper()
	dir := t.TempDir()
	b, root, id := filepath.Join(dir, "b"), filepath.Join(dir, "root"), testID(t)
	bundle(t, b, args, false, mutate)
	// The container inherits runc's stdio: a file, not a pipe that Wait
	// would wait on.
	logf, err := os.Create(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(runcPath, "--root", root, "run", "-d", "--bundle", b, id)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(logf.Name())
		t.Fatalf("runc run: %v\n%s", err, out)
	}
	t.Cleanup(func() { removeContainer(root, id) })
	return runtime.ExecTarget{ID: id, Running: true, Runtime: runtime.OCI{Path: runcPath, Root: root}, Bundle: b, Process: bundleProcess(t, b)}
}

// bundleProcess is the process of the bundle's config.json, as the
// container manager hands it to the stream server.
func bundleProcess(t *testing.T, b string) *specs.Process {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(b, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	return s.Process
}

func removeContainer(root, id string) {
	_ = exec.Command(runcPath, "--root", root, "kill", id, "KILL").Run()
	for range 50 {
		out, _ := exec.Command(runcPath, "--root", root, "state", id).Output()
		if !bytes.Contains(out, []byte(`"running"`)) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = exec.Command(runcPath, "--root", root, "delete", "-f", id).Run()
}

// conmonOpts are the stdio settings of a conmon-run container.
type conmonOpts struct {
	tty, stdin, stdinOnce bool
}

// runConmon starts a container under conmon as the container manager does
// and returns its target; cleanup kills it and waits for conmon.
func runConmon(t *testing.T, args []string, o conmonOpts) runtime.ExecTarget {
	t.Helper()
	if _, err := os.Stat("/usr/bin/conmon"); err != nil {
		t.Skip("needs conmon")
	}
	dir, err := os.MkdirTemp("/tmp", "bsc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	b, root, id := filepath.Join(dir, "b"), filepath.Join(dir, "root"), testID(t)
	attachDir, exits, persist := filepath.Join(dir, "a"), filepath.Join(dir, "exits"), filepath.Join(dir, "p")
	for _, d := range []string{attachDir, exits, persist} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	bundle(t, b, args, o.tty, nil)
	argv := []string{"-c", id, "-u", id, "-n", id, "-r", runcPath, "-b", b,
		"-p", filepath.Join(b, "pidfile"), "-P", filepath.Join(b, "conmon.pid"),
		"--socket-dir-path", attachDir, "--exit-dir", exits, "-0", persist,
		"-l", "k8s-file:" + filepath.Join(b, "ctr.log"), "--log-level", "debug",
		"--runtime-arg", "--root=" + root}
	if o.tty {
		argv = append(argv, "-t")
	} else if o.stdin {
		argv = append(argv, "-i")
	}
	if o.stdin && !o.stdinOnce {
		argv = append(argv, "--leave-stdin-open")
	}
	syncP, syncC := socketPair(t)
	startP, startC := socketPair(t)
	cmd := exec.Command("/usr/bin/conmon", argv...)
	cmd.Dir = b
	cmd.ExtraFiles = []*os.File{syncC, startC}
	cmd.Env = []string{"_OCI_SYNCPIPE=3", "_OCI_STARTPIPE=4", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	syncC.Close()
	startC.Close()
	defer syncP.Close()
	if _, err := startP.Write([]byte{0}); err != nil {
		t.Fatal(err)
	}
	startP.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("conmon: %v\n%s", err, stderr.String())
	}
	t.Cleanup(func() {
		pid, _ := os.ReadFile(filepath.Join(b, "conmon.pid"))
		removeContainer(root, id)
		if n, err := strconv.Atoi(string(pid)); err == nil {
			for range 100 {
				if syscall.Kill(n, 0) != nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	_ = syncP.SetReadDeadline(time.Now().Add(20 * time.Second))
	var msg struct {
		Pid     int    `json:"pid"`
		Message string `json:"message"`
	}
	if err := json.NewDecoder(syncP).Decode(&msg); err != nil || msg.Pid <= 0 {
		t.Fatalf("conmon create: %v %+v", err, msg)
	}
	if out, err := exec.Command(runcPath, "--root", root, "start", id).CombinedOutput(); err != nil {
		t.Fatalf("runc start: %v\n%s", err, out)
	}
	return runtime.ExecTarget{
		ID: id, Running: true, Runtime: runtime.OCI{Path: runcPath, Root: root}, Bundle: b, Process: bundleProcess(t, b),
		AttachSocket: filepath.Join(attachDir, id, "attach"), ControlFIFO: filepath.Join(b, "ctl"),
		TTY: o.tty, Stdin: o.stdin, StdinOnce: o.stdinOnce,
	}
}

func socketPair(t *testing.T) (*net.UnixConn, *os.File) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "parent")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	return c.(*net.UnixConn), os.NewFile(uintptr(fds[1]), "child")
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
