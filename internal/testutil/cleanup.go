package testutil

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cleanup tears a daemon down completely: berthd, its containers, any
// process still naming the daemon directory (conmon, namespace pins),
// mounts under the directory, and the directory itself. Problems are
// reported with t.Errorf: a leak is a bug.
func (d *Daemon) cleanup(t testing.TB) {
	if err := d.stop(); err != nil {
		t.Errorf("cleanup: stop berthd: %v", err)
	}
	if err := d.removeContainers(); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	if err := killProcessesUnder(d.Dir); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	if err := unmountUnder(d.Dir); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	if err := os.RemoveAll(d.Dir); err != nil {
		t.Errorf("cleanup: remove %s: %v", d.Dir, err)
	}
}

// removeContainers force-deletes every container in the daemon's private
// runc root.
func (d *Daemon) removeContainers() error {
	root := filepath.Join(d.Dir, "runc")
	if _, err := os.Stat(root); err != nil {
		return nil
	}
	runc := runcPath()
	out, err := exec.Command(runc, "--root", root, "list", "-q").Output()
	if err != nil {
		return fmt.Errorf("runc list in %s: %w", root, err)
	}
	var errs []error
	for _, id := range strings.Fields(string(out)) {
		if b, err := exec.Command(runc, "--root", root, "delete", "--force", id).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("runc delete %s: %w: %s", id, err, bytes.TrimSpace(b)))
		}
	}
	return errors.Join(errs...)
}

// killProcessesUnder SIGKILLs every process (other than this one) whose
// command line mentions dir, and their descendants, then waits up to 5s
// for them to go.
func killProcessesUnder(dir string) error {
	pids, err := processesMentioning(dir + "/")
	if err != nil {
		return err
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		left := 0
		for _, pid := range pids {
			if alive(pid) {
				left++
			}
		}
		if left == 0 {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("processes %v under %s survived SIGKILL", pids, dir)
}

// processesMentioning returns the processes whose command line contains
// s, plus all their descendants, never this process.
func processesMentioning(s string) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	self := os.Getpid()
	children := map[int][]int{}
	var queue []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if ppid := parentOf(pid); ppid > 0 {
			children[ppid] = append(children[ppid], pid)
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(s)) {
			queue = append(queue, pid)
		}
	}
	seen := map[int]bool{}
	var pids []int
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		pids = append(pids, pid)
		queue = append(queue, children[pid]...)
	}
	return pids, nil
}

// parentOf returns pid's parent from /proc/<pid>/stat, or 0.
func parentOf(pid int) int {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(stat[i+1:])) // state ppid ...
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// unmountUnder lazily unmounts every mount at or below dir, deepest
// first, repeating while stacked mounts remain.
func unmountUnder(dir string) error {
	for range 8 {
		mounts, err := mountsUnder(dir)
		if err != nil {
			return err
		}
		if len(mounts) == 0 {
			return nil
		}
		for _, m := range mounts {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil &&
				!errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				return fmt.Errorf("unmount %s: %w", m, err)
			}
		}
	}
	mounts, err := mountsUnder(dir)
	if err == nil && len(mounts) > 0 {
		err = fmt.Errorf("mounts left under %s: %v", dir, mounts)
	}
	return err
}

// mountsUnder lists mount points at or below dir from
// /proc/self/mountinfo, deepest first.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, nil
}

// unescapeMountPath decodes mountinfo's octal escapes (\040 for space...).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// RemoveAllPods stops and removes every sandbox through CRI before
// berthd stops, so that each pod, even after a failed test, gets its CNI
// DEL (iptables, IPs). Cleanup only: errors are ignored.
func (d *Daemon) RemoveAllPods(timeout time.Duration) {
	if d.Runtime == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return
	}
	for _, p := range resp.GetItems() {
		d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.GetId()})
		d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.GetId()})
	}
}
