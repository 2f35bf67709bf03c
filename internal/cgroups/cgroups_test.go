package cgroups

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestHierarchies(t *testing.T) {
	h, err := ProbeHierarchies()
	if err != nil {
		t.Fatal(err)
	}
	c := h.For("/kubepods/pod1/berth-conmon-x")
	if c == nil || len(c.Dirs) == 0 {
		t.Skip("no cgroup hierarchies here")
	}
	for _, d := range c.Dirs {
		if filepath.Base(d) != "berth-conmon-x" || filepath.Base(filepath.Dir(filepath.Dir(d))) == "cpuset" {
			t.Fatalf("dir %s", d)
		}
	}
	var nilC *Cgroup
	if err := nilC.Remove(0); err != nil {
		t.Fatal(err)
	}
}

// ParseMounts reads v1 controllers (skipping mount options and named
// hierarchies) and the unified mount of a hybrid host.
func TestParseMounts(t *testing.T) {
	mi := `25 24 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
29 25 0:26 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
`
	ms, err := ParseMounts(strings.NewReader(mi))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 4 || !ms[0].Unified || len(ms[1].Controllers) != 0 {
		t.Fatalf("mounts %+v", ms)
	}
	if d := ControllerDir(ms, "cpuacct"); d != "/sys/fs/cgroup/cpu,cpuacct" {
		t.Fatalf("cpuacct at %q", d)
	}
	if d := ControllerDir(ms, "hugetlb"); d != "" {
		t.Fatalf("hugetlb at %q", d)
	}
}
