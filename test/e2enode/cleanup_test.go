//go:build e2enode

package e2enode

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// hostState is what existed before the run in the host paths the
// suite's kubelet writes to, so that cleanup removes only the run's own.
type hostState struct {
	varLibKubelet bool
	// kubeletFiles, podLogs and containerLogs are the entries of
	// /var/lib/kubelet, /var/log/pods and /var/log/containers.
	kubeletFiles, podLogs, containerLogs map[string]bool
}

func snapshotHost() hostState {
	s := hostState{kubeletFiles: globSet(varLibKubelet + "/*"),
		podLogs: globSet("/var/log/pods/*"), containerLogs: globSet("/var/log/containers/*")}
	_, err := os.Stat(varLibKubelet)
	s.varLibKubelet = err == nil
	return s
}

func globSet(pattern string) map[string]bool {
	m := map[string]bool{}
	all, _ := filepath.Glob(pattern)
	for _, p := range all {
		m[p] = true
	}
	return m
}

// cleanupNode unmounts and removes the suite's work dir and what its
// kubelet added to /var/lib/kubelet, /var/log/pods and
// /var/log/containers. Runs after removeAllPods (cleanups run
// last-registered first).
func cleanupNode(t *testing.T, work string, before hostState) {
	for _, dir := range []string{work, varLibKubelet} {
		for _, m := range mountsUnder(dir) {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", m, err)
			}
		}
	}
	for p := range globSet("/var/log/containers/*") {
		if !before.containerLogs[p] {
			os.Remove(p)
		}
	}
	for p := range globSet("/var/log/pods/*") {
		if !before.podLogs[p] {
			os.RemoveAll(p)
		}
	}
	remove := []string{work}
	if !before.varLibKubelet {
		remove = append(remove, varLibKubelet)
	} else {
		// The kubelet's state (pods, checkpoints, CPU and memory manager
		// state, pki) must not outlive the run: a later kubelet would
		// read it.
		for p := range globSet(varLibKubelet + "/*") {
			if !before.kubeletFiles[p] {
				remove = append(remove, p)
			}
		}
	}
	for _, p := range remove {
		if err := os.RemoveAll(p); err != nil {
			t.Errorf("remove %s: %v", p, err)
		}
	}
}

// newKubepods notes which hierarchies have a kubepods cgroup now; the
// function it returns lists the kubepods cgroups made since.
func newKubepods() func() []string {
	before := globSet("/sys/fs/cgroup/*/kubepods")
	return func() []string {
		var made []string
		for p := range globSet("/sys/fs/cgroup/*/kubepods") {
			if !before[p] {
				made = append(made, p)
			}
		}
		return made
	}
}

// removeCgroups removes the cgroup trees made (the kubelet leaves its QoS
// cgroups), deepest first.
func removeCgroups(made []string) {
	for i := len(made) - 1; i >= 0; i-- {
		var dirs []string
		filepath.WalkDir(made[i], func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for j := len(dirs) - 1; j >= 0; j-- {
			if err := os.Remove(dirs[j]); err != nil && !os.IsNotExist(err) {
				fmt.Fprintf(os.Stderr, "e2e-node: cgroup %s left: %v\n", dirs[j], err)
			}
		}
	}
}

// mountsUnder lists mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append([]string{f[4]}, out...)
		}
	}
	return out
}
