package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	ociv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/spec"
)

// bareRunc runs the reference cycle for TestContainerCycleTime: runc
// create, start, kill, delete on a bundle with the spec berth would
// write (same seccomp profile, capabilities, namespaces and cgroup) over
// a rootfs holding busybox, with runc's own state root.
type bareRunc struct {
	bundle, root string
}

func newBareRunc(t *testing.T, e *ctrEnv) *bareRunc {
	t.Helper()
	b := &bareRunc{bundle: filepath.Join(e.d.Dir, "bare"), root: filepath.Join(e.d.Dir, "bare-runc")}
	rootfs := filepath.Join(b.bundle, "rootfs")
	for _, d := range []string{"bin", "proc", "sys", "dev", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("cp", "/bin/busybox", filepath.Join(rootfs, "bin/sleep")).CombinedOutput(); err != nil {
		t.Fatalf("copy busybox: %v %s", err, out)
	}
	host, err := spec.ProbeHost()
	if err != nil {
		t.Fatal(err)
	}
	res, err := spec.Generate(&spec.Input{
		ID: "bare", Config: e.config("bare", "/bin/sleep", "1000"), Image: ociv1.ImageConfig{}, RootFS: rootfs, Host: host,
		Sandbox: spec.Sandbox{ID: "bare", CgroupParent: "/berth-bare"},
		Options: spec.Options{DefaultCaps: []string{"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "SETGID", "SETUID", "SETPCAP", "NET_BIND_SERVICE", "KILL"}, CgroupManager: "cgroupfs"},
	})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(res.Spec)
	if err := os.WriteFile(filepath.Join(b.bundle, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	// Become the subreaper of the containers runc creates, as conmon is.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command("runc", "--root", b.root, "delete", "--force", "bare").Run()
		// runc leaves the parent cgroup it made.
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/berth-bare")
		for _, d := range dirs {
			os.Remove(d)
		}
	})
	return b
}

func (b *bareRunc) runc(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("runc", append([]string{"--root", b.root}, args...)...)
	cmd.Dir = b.bundle
	if args[0] == "create" {
		// The container inherits create's stdio: no pipes to wait on.
		if err := cmd.Run(); err != nil {
			t.Fatalf("runc %v: %v", args, err)
		}
		return ""
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("runc %v: %v: %s", args, err, out)
	}
	return string(out)
}

// cycle is create, start, kill, wait for the exit, delete.
func (b *bareRunc) cycle(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	pidFile := filepath.Join(b.bundle, "pid")
	b.runc(t, "create", "--bundle", b.bundle, "--pid-file", pidFile, "bare")
	b.runc(t, "start", "bare")
	b.runc(t, "kill", "bare", "KILL")
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	// This process is the subreaper of the container's init (conmon is,
	// for berth): reap it, or runc delete waits for the cgroup to empty.
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
		t.Fatalf("wait for the container: %v", err)
	}
	b.runc(t, "delete", "bare")
	return time.Since(start)
}
