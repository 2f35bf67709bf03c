package cgroups

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
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
	want := v1Reader{cpuacct: "/sys/fs/cgroup/cpu,cpuacct", memory: "/sys/fs/cgroup/memory", pids: "/sys/fs/cgroup/pids", cpu: "/sys/fs/cgroup/cpu,cpuacct"}
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

func TestV2Detail(t *testing.T) {
	r := v2Reader{root: "testdata/cgroupv2"}
	d, err := r.ReadDetail("/kubepods/pod1/ctr1")
	if err != nil {
		t.Fatal(err)
	}
	want := Detail{
		CPUUserNanos: 2e9, CPUSystemNanos: 5e8,
		CFSPeriods: 40, CFSThrottledPeriods: 12, CFSThrottledNanos: 3e9,
		CPUPeriod: 100000, CPUQuota: 50000, CPUShares: 2 + 78*262142/9999, // weight 79 is 2048 shares, rounded down
		Cache: 31457280, MappedFile: 4096, KernelUsage: 1048576,
		MaxUsage: 209715200, Failcnt: 5, OOMKills: 1, PidsMax: 64,
		IO:    []DeviceIO{{Major: 8, Minor: 0, ReadBytes: 8192, WriteBytes: 4096, Reads: 2, Writes: 1}},
		Procs: []int{101, 102},
	}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("got  %+v\nwant %+v", d, want)
	}
	if _, err := r.ReadDetail("/kubepods/pod1/gone"); !errors.Is(err, ErrVanished) {
		t.Fatalf("vanished: %v", err)
	}
}

func TestV1Detail(t *testing.T) {
	root := t.TempDir()
	write := func(ctrl, file, content string) {
		dir := filepath.Join(root, ctrl, "pod1", "ctr1")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("cpu,cpuacct", "cpuacct.stat", "user 300\nsystem 50\n")
	write("cpu,cpuacct", "cpu.stat", "nr_periods 9\nnr_throttled 3\nthrottled_time 1500000000\n")
	write("cpu,cpuacct", "cpu.cfs_period_us", "100000\n")
	write("cpu,cpuacct", "cpu.cfs_quota_us", "-1\n")
	write("cpu,cpuacct", "cpu.shares", "1024\n")
	write("memory", "memory.stat", "total_cache 4096\ntotal_mapped_file 1024\n")
	write("memory", "memory.max_usage_in_bytes", "65536\n")
	write("memory", "memory.failcnt", "2\n")
	write("memory", "memory.soft_limit_in_bytes", "9223372036854771712\n")
	write("memory", "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
	write("memory", "cgroup.procs", "7\n")
	write("pids", "pids.max", "max\n")
	write("blkio", "blkio.throttle.io_service_bytes_recursive", "8:0 Read 512\n8:0 Write 1024\n8:0 Total 1536\nTotal 1536\n")
	write("blkio", "blkio.throttle.io_serviced_recursive", "8:0 Read 1\n8:0 Write 2\n")
	c := func(ctrl string) string { return filepath.Join(root, ctrl) }
	r := v1Reader{cpuacct: c("cpu,cpuacct"), cpu: c("cpu,cpuacct"), memory: c("memory"), pids: c("pids"), blkio: c("blkio")}
	d, err := r.ReadDetail("/pod1/ctr1")
	if err != nil {
		t.Fatal(err)
	}
	want := Detail{
		CPUUserNanos: 3e9, CPUSystemNanos: 5e8, // USER_HZ ticks
		CFSPeriods: 9, CFSThrottledPeriods: 3, CFSThrottledNanos: 15e8,
		CPUPeriod: 100000, CPUQuota: -1, CPUShares: 1024,
		Cache: 4096, MappedFile: 1024, MaxUsage: 65536, Failcnt: 2, OOMKills: 3,
		IO:    []DeviceIO{{Major: 8, Minor: 0, ReadBytes: 512, WriteBytes: 1024, Reads: 1, Writes: 2}},
		Procs: []int{7},
	}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("got  %+v\nwant %+v", d, want)
	}
}
