package stats

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain turns the test binary into a helper process when asked:
// BERTH_STATS_HELPER=burn spins on one CPU, alloc:N holds N MiB of
// touched memory. Each waits for a line on stdin (sent once it is in
// its cgroup, so that its memory is charged there), prints "ready" and
// runs until killed.
func TestMain(m *testing.M) {
	h := os.Getenv("BERTH_STATS_HELPER")
	if h != "" {
		bufio.NewReader(os.Stdin).ReadString('\n')
	}
	switch {
	case h == "burn":
		fmt.Println("ready")
		for x := 0; ; x++ {
			_ = x * x
		}
	case strings.HasPrefix(h, "alloc:"):
		n, _ := strconv.Atoi(strings.TrimPrefix(h, "alloc:"))
		buf := make([]byte, n<<20)
		for i := 0; i < len(buf); i += 4096 {
			buf[i] = 1
		}
		fmt.Println("ready")
		for {
			time.Sleep(time.Hour)
			buf[0]++
		}
	}
	os.Exit(m.Run())
}

// helper starts the test binary as a helper of the given kind, waiting
// for the returned function (call it once the helper is in its cgroup),
// which lets it go and waits for "ready".
func helper(t *testing.T, kind string) (pid int, resume func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BERTH_STATS_HELPER="+kind)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd.Process.Pid, func() {
		t.Helper()
		if _, err := in.Write([]byte("go\n")); err != nil {
			t.Fatal(err)
		}
		done := make(chan string, 1)
		go func() {
			line, _ := bufio.NewReader(out).ReadString('\n')
			done <- line
		}()
		select {
		case line := <-done:
			if strings.TrimSpace(line) != "ready" {
				t.Fatalf("helper said %q", line)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("helper not ready")
		}
	}
}

// makeCgroup creates rel below each of the given hierarchy mount
// points, moves pid into it, and removes it at cleanup, killing what
// is left in it.
func makeCgroup(t *testing.T, mounts []string, rel string, pid int) {
	t.Helper()
	for _, m := range mounts {
		dir := filepath.Join(m, rel)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { removeCgroup(dir) })
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			t.Fatalf("move %d into %s: %v", pid, dir, err)
		}
	}
}

// removeCgroup kills the cgroup's processes and removes it, retrying
// while they are still leaving.
func removeCgroup(dir string) {
	if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	for range 500 {
		if err := syscall.Rmdir(dir); err == nil || os.IsNotExist(err) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}
