package stats

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestV2Fixture(t *testing.T) {
	r := v2Reader{root: "testdata/cgroupv2"}
	u, err := r.read(CgroupDir("/kubepods/pod1/ctr1"))
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
	u, err = r.read("/nomem")
	if err != nil || u.CPUNanos != 42_000 || u.MemoryUsage != 0 || u.HasSwap || u.Pids != 0 {
		t.Fatalf("nomem: %+v, %v", u, err)
	}
	// A vanished cgroup is errVanished, not some parse error.
	if _, err := r.read("/kubepods/pod1/gone"); !errors.Is(err, errVanished) {
		t.Fatalf("vanished: %v", err)
	}
	// The CPU counter alone reads the same value from cpu.stat.
	if cs, err := r.readCPU("/kubepods/pod1/ctr1"); err != nil || cs.nanos != 2_500_000_000 || cs.time.IsZero() {
		t.Fatalf("readCPU: %+v, %v", cs, err)
	}
	if _, err := r.readCPU("/kubepods/pod1/gone"); !errors.Is(err, errVanished) {
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
	v, err := parseV1Mounts(strings.NewReader(mi))
	if err != nil {
		t.Fatal(err)
	}
	want := v1Reader{cpuacct: "/sys/fs/cgroup/cpu,cpuacct", memory: "/sys/fs/cgroup/memory", pids: "/sys/fs/cgroup/pids"}
	if v != want {
		t.Fatalf("got %+v, want %+v", v, want)
	}
	if _, err := parseV1Mounts(strings.NewReader("26 25 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")); err == nil {
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
		if got := CgroupDir(in); got != want {
			t.Errorf("CgroupDir(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestV1Live measures a cgroup v1 cgroup made for the test: a process
// burning one CPU and one holding 64 MiB.
func TestV1Live(t *testing.T) {
	requireRoot(t)
	r, err := probeCgroups()
	if err != nil {
		t.Skip(err)
	}
	v1, ok := r.(v1Reader)
	if !ok || v1.cpuacct == "" || v1.memory == "" || v1.pids == "" {
		t.Skipf("no cgroup v1 cpuacct, memory and pids hierarchies: %+v", r)
	}
	rel := fmt.Sprintf("/berth-stats-test-%d", os.Getpid())
	mounts := []string{v1.cpuacct, v1.memory, v1.pids}
	for _, m := range mounts {
		t.Cleanup(func() { removeCgroup(m + rel) }) // after its children
	}

	burner, goBurn := helper(t, "burn")
	makeCgroup(t, mounts, rel+"/burn", burner)
	goBurn()
	eater, goEat := helper(t, "alloc:64")
	makeCgroup(t, mounts, rel+"/eat", eater)
	goEat()

	first, err := v1.read(rel + "/burn")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	second, err := v1.read(rel + "/burn")
	if err != nil {
		t.Fatal(err)
	}
	cores := float64(second.CPUNanos-first.CPUNanos) / second.Time.Sub(first.Time).Seconds() / 1e9
	// One core, on a machine others share.
	if cores < 0.2 || cores > 1.2 {
		t.Errorf("burner used %.2f cores, want about 1", cores)
	}
	if second.Pids < 1 || second.MemoryUsage == 0 {
		t.Errorf("burner: %+v", second)
	}
	// The CPU counter alone goes on from the full read.
	cs, err := v1.readCPU(rel + "/burn")
	if err != nil || cs.nanos < second.CPUNanos || !cs.time.After(second.Time) {
		t.Errorf("readCPU after read %+v: %+v, %v", second, cs, err)
	}

	mem, err := v1.read(rel + "/eat")
	if err != nil {
		t.Fatal(err)
	}
	const mib = 1 << 20
	if mem.WorkingSet < 64*mib || (!raceEnabled && mem.WorkingSet > 64*mib+48*mib) {
		t.Errorf("working set %d MiB, want 64 MiB and a runtime's worth", mem.WorkingSet/mib)
	}
	if mem.WorkingSet > mem.MemoryUsage || mem.RSS < 60*mib || mem.PageFaults == 0 {
		t.Errorf("memory: %+v", mem)
	}
	if mem.MemoryLimit != 0 {
		t.Errorf("unlimited cgroup reports limit %d", mem.MemoryLimit)
	}

	// A limit is reported, and the helper's cgroup going away reads as
	// errVanished.
	if err := os.WriteFile(v1.memory+rel+"/eat/memory.limit_in_bytes", []byte("268435456"), 0); err != nil {
		t.Fatal(err)
	}
	if mem, _ = v1.read(rel + "/eat"); mem.MemoryLimit != 268435456 {
		t.Errorf("limit %d", mem.MemoryLimit)
	}
	for _, m := range mounts {
		removeCgroup(m + rel + "/eat")
	}
	if _, err := v1.read(rel + "/eat"); !errors.Is(err, errVanished) {
		t.Fatalf("removed cgroup: %v", err)
	}
	if _, err := v1.readCPU(rel + "/eat"); !errors.Is(err, errVanished) {
		t.Fatalf("readCPU of a removed cgroup: %v", err)
	}
}

// TestV2LiveCPU exercises the v2 reader on the live unified hierarchy
// when the host mounts one (a hybrid host does, without controllers:
// cpu.stat is still there).
func TestV2LiveCPU(t *testing.T) {
	requireRoot(t)
	root := "/sys/fs/cgroup"
	var st unix.Statfs_t
	if unix.Statfs(root, &st) != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		root = "/sys/fs/cgroup/unified"
		if unix.Statfs(root, &st) != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
			t.Skip("no cgroup v2 hierarchy")
		}
	}
	rel := fmt.Sprintf("/berth-stats-test-v2-%d", os.Getpid())
	burner, goBurn := helper(t, "burn")
	makeCgroup(t, []string{root}, rel, burner)
	goBurn()
	r := v2Reader{root: root}
	first, err := r.read(rel)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	second, err := r.read(rel)
	if err != nil {
		t.Fatal(err)
	}
	cores := float64(second.CPUNanos-first.CPUNanos) / second.Time.Sub(first.Time).Seconds() / 1e9
	if cores < 0.2 || cores > 1.2 {
		t.Errorf("burner used %.2f cores, want about 1", cores)
	}
}

// BenchmarkCgroupRead compares a full read of a cgroup with a read of
// its CPU counter alone, which every stats request makes per container
// between the loop's samples. It reads the root cgroup of this host.
func BenchmarkCgroupRead(b *testing.B) {
	r, err := probeCgroups()
	if err != nil {
		b.Skip(err)
	}
	b.Run("full", func(b *testing.B) {
		for range b.N {
			if _, err := r.read("/"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cpu", func(b *testing.B) {
		for range b.N {
			if _, err := r.readCPU("/"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
