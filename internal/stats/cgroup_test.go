package stats

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/cgroups"
	"golang.org/x/sys/unix"
)

// TestV1Live measures a cgroup v1 cgroup made for the test: a process
// burning one CPU and one holding 64 MiB.
func TestV1Live(t *testing.T) {
	requireRoot(t)
	r, err := cgroups.ProbeReader()
	if err != nil {
		t.Skip(err)
	}
	ms, err := cgroups.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	mounts := []string{cgroups.ControllerDir(ms, "cpuacct"), cgroups.ControllerDir(ms, "memory"), cgroups.ControllerDir(ms, "pids")}
	if cgroups.IsUnified(cgroups.Root) || slices.Contains(mounts, "") {
		t.Skipf("no cgroup v1 cpuacct, memory and pids hierarchies: %v", mounts)
	}

	rel := fmt.Sprintf("/berth-stats-test-%d", os.Getpid())
	for _, m := range mounts {
		t.Cleanup(func() { removeCgroup(m + rel) }) // after its children
	}

	burner, goBurn := helper(t, "burn")
	makeCgroup(t, mounts, rel+"/burn", burner)
	goBurn()
	eater, goEat := helper(t, "alloc:64")
	makeCgroup(t, mounts, rel+"/eat", eater)
	goEat()

	first, err := r.Read(rel + "/burn")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	second, err := r.Read(rel + "/burn")
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
	cs, err := r.ReadCPU(rel + "/burn")
	if err != nil || cs.Nanos < second.CPUNanos || !cs.Time.After(second.Time) {
		t.Errorf("readCPU after read %+v: %+v, %v", second, cs, err)
	}

	mem, err := r.Read(rel + "/eat")
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
	// cgroups.ErrVanished.
	if err := os.WriteFile(mounts[1]+rel+"/eat/memory.limit_in_bytes", []byte("268435456"), 0); err != nil {
		t.Fatal(err)
	}
	if mem, _ = r.Read(rel + "/eat"); mem.MemoryLimit != 268435456 {
		t.Errorf("limit %d", mem.MemoryLimit)
	}
	for _, m := range mounts {
		removeCgroup(m + rel + "/eat")
	}
	if _, err := r.Read(rel + "/eat"); !errors.Is(err, cgroups.ErrVanished) {
		t.Fatalf("removed cgroup: %v", err)
	}
	if _, err := r.ReadCPU(rel + "/eat"); !errors.Is(err, cgroups.ErrVanished) {
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
	r := cgroups.NewV2Reader(root)
	first, err := r.Read(rel)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	second, err := r.Read(rel)
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
	r, err := cgroups.ProbeReader()
	if err != nil {
		b.Skip(err)
	}
	b.Run("full", func(b *testing.B) {
		for range b.N {
			if _, err := r.Read("/"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cpu", func(b *testing.B) {
		for range b.N {
			if _, err := r.ReadCPU("/"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
