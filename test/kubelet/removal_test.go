//go:build kubelet

package kubelet

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testRemoval removes every manifest left and checks that the kubelet drops
// the pods and that, once its container GC has run (every minute), no
// trace of any pod of the run is left on the host: no container, conmon
// or pause process, no mount (rootfs, shm, pinned namespace) under
// berthd's directory, no pod or container record, no pod log directory.
// It inspects the host, never asks berth.
func testRemoval(t *testing.T, e *env) {
	left, _ := filepath.Glob(filepath.Join(e.manifests, "*.json"))
	for _, m := range left {
		os.Remove(m)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		pods, err := e.pods()
		if err == nil && len(pods) == 0 {
			break
		}
		if time.Now().After(deadline) {
			names := []string{}
			for _, p := range pods {
				names = append(names, p.Name+"/"+string(p.Status.Phase))
			}
			t.Fatalf("pods still in /pods 2m after their manifests went: %v %v", names, err)
		}
		time.Sleep(time.Second)
	}
	t.Logf("/pods empty; waiting for the kubelet's container GC")
	deadline = time.Now().Add(3 * time.Minute)
	for {
		leftovers := e.leftovers()
		if len(leftovers) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("3m after the pods left /pods:\n%s", strings.Join(leftovers, "\n"))
		}
		time.Sleep(2 * time.Second)
	}
}

// leftovers describes what of the run's pods is still on the host.
func (e *env) leftovers() []string {
	var out []string
	dir := e.d.Dir
	berthd := e.d.Cmd.Process.Pid
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == berthd || pid == os.Getpid() {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		root, _ := os.Readlink(fmt.Sprintf("/proc/%d/root", pid))
		cmd := strings.ReplaceAll(strings.TrimSpace(string(cmdline)), "\x00", " ")
		if len(cmdline) == 0 || parentPid(pid) == berthd && strings.HasPrefix(cmd, filepath.Join(e.d.BinDir, "berthd")) {
			continue // kernel threads; berthd's own short-lived re-execs
		}
		if strings.Contains(cmd, dir+"/") || strings.HasPrefix(root, dir+"/") {
			out = append(out, fmt.Sprintf("process %d (root %s): %.200s", pid, root, cmd))
		}
	}
	for _, m := range mountsUnder(dir) {
		rel := strings.TrimPrefix(m, dir+"/")
		// containers/storage keeps its driver home (and run root) mounted
		// for as long as berthd has the store open.
		if rel == "storage/overlay" || rel == "storage" || rel == "runroot" || rel == "runroot/overlay" {
			continue
		}
		out = append(out, "mount "+m)
	}
	for _, pattern := range []string{
		filepath.Join(dir, "state", "pods", "*"),
		filepath.Join(dir, "state", "containers", "*"),
		filepath.Join(dir, "run", "ns", "*", "*"),
		filepath.Join(dir, "run", "pods", "*"),
		filepath.Join(dir, "run", "containers", "*"),
		filepath.Join(e.podLogs, "*"),
	} {
		matches, _ := filepath.Glob(pattern)
		for _, m := range matches {
			if !strings.HasPrefix(filepath.Base(m), ".") {
				out = append(out, "left "+m)
			}
		}
	}
	links, _ := filepath.Glob("/var/log/containers/*.log")
	for _, l := range links {
		if dst, err := os.Readlink(l); err == nil && strings.HasPrefix(dst, e.dir+"/") {
			out = append(out, "symlink "+l)
		}
	}
	return out
}

func parentPid(pid int) int {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(stat), ')')
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}
