package stats

import (
	"context"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestCPUReadOnEveryCall: with a collection period, the RPCs answer
// from the loop's samples but read the CPU counter (and only it) on
// each call, so two calls a second apart, as crictl stats makes, see
// the counter and its timestamp move and get a rate on the second.
// Before, both were answered from one cached sample: crictl failed with
// "cpu stat is not updated during sample" and berth stats showed 0%.
func TestCPUReadOnEveryCall(t *testing.T) {
	src := &fakeSources{
		ctrs: []ContainerTarget{ctr("c1", "own", nil), ctr("c2", "shared", nil)},
		pods: []PodTarget{{ID: "own", CgroupDir: "/pods/own"}, {ID: "shared"}},
	}
	c, fc, _ := newTestCollector(t, time.Hour, src, nil)
	ctx := context.Background()
	start := fc.clock()

	// The loop samples c1, c2 and the pod "own" in full once, then not
	// for an hour.
	c.ensure()
	deadline := time.Now().Add(10 * time.Second)
	for full, _ := fc.counts(); full < 3; full, _ = fc.counts() {
		if time.Now().After(deadline) {
			t.Fatal("the loop never sampled")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cores := map[string]float64{"/pods/own/berth-c1": 1, "/pods/shared/berth-c2": 0.5, "/pods/own": 1}

	first, err := c.ContainerStats(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if first.GetCpu().GetUsageNanoCores() != nil {
		t.Fatalf("a rate from one sample: %v", first.GetCpu())
	}
	fc.advance(time.Second, cores)
	second, err := c.ContainerStats(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	cpu1, cpu2 := first.GetCpu(), second.GetCpu()
	if dt := cpu2.GetTimestamp() - cpu1.GetTimestamp(); dt != int64(time.Second) {
		t.Errorf("CPU timestamps %d apart, want a second", dt)
	}
	if d := cpu2.GetUsageCoreNanoSeconds().GetValue() - cpu1.GetUsageCoreNanoSeconds().GetValue(); d != 1e9 {
		t.Errorf("usage core ns moved by %d, want 1e9", d)
	}
	if got := cpu2.GetUsageNanoCores(); got.GetValue() != 1e9 {
		t.Errorf("usage nano cores %v on the second call, want 1e9", got)
	}
	// Memory stays the loop's sample: only the CPU counter was read.
	if ts := second.GetMemory().GetTimestamp(); ts != start.UnixNano() {
		t.Errorf("memory timestamp moved by %v", time.Duration(ts-start.UnixNano()))
	}
	if full, cpuOnly := fc.counts(); full != 3 || cpuOnly != 2 {
		t.Errorf("%d full and %d CPU reads, want 3 (the loop's) and 2", full, cpuOnly)
	}

	// The list and pod variants share the path: a pod with its own
	// cgroup reads that cgroup's counter, a pod in a shared one sums its
	// containers' fresh readings.
	fc.advance(time.Second, cores)
	now := fc.clock().UnixNano()
	list, err := c.ListContainerStats(ctx, nil)
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %v, %v", list, err)
	}
	for _, st := range list {
		want := map[string]uint64{"c1": 1e9, "c2": 0.5e9}[st.GetAttributes().GetId()]
		if cu := st.GetCpu(); cu.GetTimestamp() != now || cu.GetUsageNanoCores().GetValue() != want {
			t.Errorf("list %s: %v, want a rate of %d at the clock's time", st.GetAttributes().GetId(), cu, want)
		}
	}
	pods, err := c.ListPodSandboxStats(ctx, nil)
	if err != nil || len(pods) != 2 {
		t.Fatalf("pods: %v, %v", pods, err)
	}
	for _, p := range pods {
		want := map[string]uint64{"own": 1e9, "shared": 0.5e9}[p.GetAttributes().GetId()]
		if cu := p.GetLinux().GetCpu(); cu.GetTimestamp() != now || cu.GetUsageNanoCores().GetValue() != want {
			t.Errorf("pod %s: %v, want a rate of %d at the clock's time", p.GetAttributes().GetId(), cu, want)
		}
	}
	fc.advance(time.Second, cores)
	pms, err := c.PodSandboxMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, pm := range pms {
		for _, cm := range pm.GetContainerMetrics() {
			for _, m := range cm.GetMetrics() {
				if m.GetName() == "container_cpu_usage_seconds_total" && m.GetTimestamp() != fc.clock().UnixNano() {
					t.Errorf("%s: CPU metric at %d, want the clock's time", cm.GetContainerId(), m.GetTimestamp())
				}
			}
		}
	}
	if full, _ := fc.counts(); full != 3 {
		t.Errorf("%d full reads, want only the loop's 3", full)
	}
}

// TestRateFromTwoCloseSamples: a rate needs two readings minWindow
// apart, not a collection period; a burst closer than that adds no
// window of its own but still reports the newest counter.
func TestRateFromTwoCloseSamples(t *testing.T) {
	src := &fakeSources{ctrs: []ContainerTarget{ctr("c1", "p1", nil)}, pods: []PodTarget{{ID: "p1"}}}
	c, fc, _ := newTestCollector(t, 0, src, nil)
	ctx := context.Background()
	rel := "/pods/p1/berth-c1"
	cpu := func() *runtimeapi.CpuUsage {
		t.Helper()
		st, err := c.ContainerStats(ctx, "c1")
		if err != nil {
			t.Fatal(err)
		}
		return st.GetCpu()
	}
	cpu()
	fc.advance(minWindow/2, map[string]float64{rel: 2})
	if cu := cpu(); cu.GetUsageNanoCores() != nil || cu.GetUsageCoreNanoSeconds().GetValue() != uint64(2*minWindow/2) {
		t.Fatalf("after half a window: %v", cu)
	}
	fc.advance(minWindow/2, map[string]float64{rel: 2})
	if cu := cpu(); cu.GetUsageNanoCores().GetValue() != 2e9 {
		t.Fatalf("after a window at two cores: %v", cu)
	}
}
