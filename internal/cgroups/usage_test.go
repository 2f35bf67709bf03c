package cgroups

import (
	"errors"
	"strings"
	"testing"
)

func TestV2Fixture(t *testing.T) {
	r := v2Reader{root: "testdata/cgroupv2"}
	u, err := r.Read(PathDir("/kubepods/pod1/ctr1"))
	if err != nil {
		t.Fatal(err)
	}
	want := Usage{
		Time:            u.Time,
		CPUNanos:        2_500_000_000,
		MemoryUsage:     104857600,
		WorkingSet:      104857600 - 20971520, // usage - inactive_file
		RSS:             73400320,
		PageFaults:      12345,
		MajorPageFaults: 7,
		MemoryLimit:     268435456,
		HasSwap:         true,
		SwapUsage:       4096,
		SwapLimit:       0, // max
		Pids:            3,
	}
	if u != want {
		t.Fatalf("got  %+v\nwant %+v", u, want)
	}

	// A cgroup without the memory and pids controllers reports zeros.
	u, err = r.Read("/nomem")
	if err != nil || u.CPUNanos != 42_000 || u.MemoryUsage != 0 || u.HasSwap || u.Pids != 0 {
		t.Fatalf("nomem: %+v, %v", u, err)
	}
	// A vanished cgroup is ErrVanished, not some parse error.
	if _, err := r.Read("/kubepods/pod1/gone"); !errors.Is(err, ErrVanished) {
		t.Fatalf("vanished: %v", err)
	}
	// The CPU counter alone reads the same value from cpu.stat.
	if cs, err := r.ReadCPU("/kubepods/pod1/ctr1"); err != nil || cs.Nanos != 2_500_000_000 || cs.Time.IsZero() {
		t.Fatalf("readCPU: %+v, %v", cs, err)
	}
	if _, err := r.ReadCPU("/kubepods/pod1/gone"); !errors.Is(err, ErrVanished) {
		t.Fatalf("readCPU of a vanished cgroup: %v", err)
	}
}

func TestWorkingSetNeverNegative(t *testing.T) {
	if ws := workingSet(100, 250); ws != 0 {
		t.Fatalf("workingSet(100, 250) = %d", ws)
	}
	if ws := workingSet(300, 100); ws != 200 {
		t.Fatalf("workingSet(300, 100) = %d", ws)
	}
}

func TestParseV1Mounts(t *testing.T) {
	mi := `25 20 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:12 - cgroup cgroup rw,cpu,cpuacct
31 25 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
32 25 0:29 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
33 25 0:30 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
`
	ms, err := ParseMounts(strings.NewReader(mi))
	if err != nil {
		t.Fatal(err)
	}
	v, err := v1FromMounts(ms)
	if err != nil {
		t.Fatal(err)
	}
	want := v1Reader{cpuacct: "/sys/fs/cgroup/cpu,cpuacct", memory: "/sys/fs/cgroup/memory", pids: "/sys/fs/cgroup/pids"}
	if v != want {
		t.Fatalf("got %+v, want %+v", v, want)
	}
	ms, _ = ParseMounts(strings.NewReader("26 25 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"))
	if _, err := v1FromMounts(ms); err == nil {
		t.Fatal("a v2-only mountinfo gave a v1 reader")
	}
}

func TestCgroupDir(t *testing.T) {
	for in, want := range map[string]string{
		"":                                   "",
		"/kubepods/pod1/berth-abc":           "/kubepods/pod1/berth-abc",
		"kubepods/pod1":                      "/kubepods/pod1",
		"kubepods-besteffort-pod1.slice":     "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice",
		"kubepods-pod1.slice:berth:abc":      "/kubepods.slice/kubepods-pod1.slice/berth-abc.scope",
		"system.slice:berth:abc":             "/system.slice/berth-abc.scope",
		"-.slice:berth:abc":                  "/berth-abc.scope",
		"/berth/../escape":                   "/escape",
		"kubepods.slice/kubepods-pod1.slice": "/kubepods.slice/kubepods-pod1.slice",
	} {
		if got := PathDir(in); got != want {
			t.Errorf("PathDir(%q) = %q, want %q", in, got, want)
		}
	}
}
