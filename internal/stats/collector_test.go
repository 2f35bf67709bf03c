package stats

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
)

// fakeCgroups serves cgroup reads from memory on a fake clock. reads
// counts full reads, cpuReads reads of the CPU counter alone.
type fakeCgroups struct {
	mu       sync.Mutex
	now      time.Time
	cpu      map[string]uint64
	gone     map[string]bool
	reads    int
	cpuReads int
}

func newFakeCgroups() *fakeCgroups {
	return &fakeCgroups{now: time.Unix(1_700_000_000, 0), cpu: map[string]uint64{}, gone: map[string]bool{}}
}

func (f *fakeCgroups) Read(rel string) (cgroups.Usage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.gone[rel] {
		return cgroups.Usage{}, fmt.Errorf("%s: %w", rel, cgroups.ErrVanished)
	}
	return cgroups.Usage{
		Time: f.now, CPUNanos: f.cpu[rel],
		MemoryUsage: 100 << 20, WorkingSet: 60 << 20, RSS: 50 << 20, PageFaults: 10, MajorPageFaults: 1,
		MemoryLimit: 200 << 20, Pids: 2,
	}, nil
}

func (f *fakeCgroups) ReadCPU(rel string) (cgroups.CPUSample, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cpuReads++
	if f.gone[rel] {
		return cgroups.CPUSample{}, fmt.Errorf("%s: %w", rel, cgroups.ErrVanished)
	}
	return cgroups.CPUSample{Time: f.now, Nanos: f.cpu[rel]}, nil
}

func (f *fakeCgroups) ReadDetail(rel string) (cgroups.Detail, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone[rel] {
		return cgroups.Detail{}, fmt.Errorf("%s: %w", rel, cgroups.ErrVanished)
	}
	return cgroups.Detail{CPUUserNanos: 3e9, CPUSystemNanos: 1e9, CFSPeriods: 10, CFSThrottledPeriods: 4, CFSThrottledNanos: 2e9,
		CPUPeriod: 100000, CPUQuota: 50000, CPUShares: 512, Cache: 1 << 20, OOMKills: 1, PidsMax: 64,
		IO: []cgroups.DeviceIO{{Major: 7, Minor: 0, ReadBytes: 4096, Reads: 1}}}, nil
}

func (f *fakeCgroups) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// counts returns the number of full and of CPU-only reads so far.
func (f *fakeCgroups) counts() (full, cpu int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads, f.cpuReads
}

// advance moves the clock by d and charges each cgroup cores*d of CPU.
func (f *fakeCgroups) advance(d time.Duration, cores map[string]float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	for rel, c := range cores {
		f.cpu[rel] += uint64(c * float64(d))
	}
}

type fakeSources struct {
	mu   sync.Mutex
	ctrs []ContainerTarget
	pods []PodTarget
}

func (f *fakeSources) StatsContainers() []ContainerTarget {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ContainerTarget(nil), f.ctrs...)
}

func (f *fakeSources) StatsContainer(id string) (ContainerTarget, error) {
	return lookupPrefix(f.StatsContainers(), func(t ContainerTarget) string { return t.ID }, id, "container")
}

func (f *fakeSources) StatsPods() []PodTarget {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]PodTarget(nil), f.pods...)
}

func (f *fakeSources) StatsPod(id string) (PodTarget, error) {
	return lookupPrefix(f.StatsPods(), func(p PodTarget) string { return p.ID }, id, "pod sandbox")
}

func ctr(id, pod string, labels map[string]string) ContainerTarget {
	return ContainerTarget{ID: id, PodID: pod, Name: "name-" + id, Image: "img", Labels: labels,
		CgroupPath: "/pods/" + pod + "/berth-" + id, Running: true, StorageID: "s-" + id}
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newTestCollector(t testing.TB, period time.Duration, src *fakeSources, layers LayerSource) (*Collector, *fakeCgroups, *logBuf) {
	t.Helper()
	cfg := config.Default()
	cfg.Berth.Stats.CollectionPeriod.Duration = period
	logs := &logBuf{}
	c := New(Options{
		Config:     func() *config.Config { return cfg },
		Log:        slog.New(slog.NewTextHandler(logs, nil)),
		Pods:       src,
		Containers: src,
		Layers:     layers,
	})
	fc := newFakeCgroups()
	c.reader = fc
	c.now = fc.clock
	c.readNet = func(ns string) ([]Interface, error) {
		return []Interface{{Name: "lo", RxBytes: 1}, {Name: "eth0", RxBytes: 1000, TxBytes: 2000}, {Name: "net1", RxBytes: 5}}, nil
	}
	t.Cleanup(func() { c.Close() })
	return c, fc, logs
}

func TestContainerStatsOnDemand(t *testing.T) {
	src := &fakeSources{ctrs: []ContainerTarget{ctr("c1", "p1", nil)}, pods: []PodTarget{{ID: "p1"}}}
	c, fc, _ := newTestCollector(t, 0, src, nil)
	ctx := context.Background()

	st, err := c.ContainerStats(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if st.GetCpu().GetUsageNanoCores() != nil {
		t.Fatalf("a rate from one sample: %v", st.GetCpu())
	}
	m := st.GetMemory()
	if m.GetWorkingSetBytes().GetValue() != 60<<20 || m.GetUsageBytes().GetValue() != 100<<20 ||
		m.GetAvailableBytes().GetValue() != 140<<20 || m.GetRssBytes().GetValue() != 50<<20 || m.GetPageFaults().GetValue() != 10 {
		t.Fatalf("memory %v", m)
	}
	if st.GetAttributes().GetMetadata().GetName() != "name-c1" || st.GetWritableLayer() != nil {
		t.Fatalf("stats %v", st)
	}

	// Bursts within minWindow give no new rate window; two seconds of
	// one core later the rate is one core.
	fc.advance(2*time.Second, map[string]float64{"/pods/p1/berth-c1": 1})
	st, _ = c.ContainerStats(ctx, "c1")
	if got := st.GetCpu().GetUsageNanoCores().GetValue(); got != 1e9 {
		t.Fatalf("usage nano cores %d, want 1e9", got)
	}
	if got := st.GetCpu().GetUsageCoreNanoSeconds().GetValue(); got != 2e9 {
		t.Fatalf("usage core ns %d", got)
	}
	fc.advance(100*time.Millisecond, map[string]float64{"/pods/p1/berth-c1": 0.5})
	st, _ = c.ContainerStats(ctx, "c1")
	if got := st.GetCpu().GetUsageNanoCores().GetValue(); got < 0.9e9 || got > 1e9 {
		t.Fatalf("rate over a short burst: %d", got)
	}

	if _, err := c.ContainerStats(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("unknown container: %v", err)
	}
	if _, err := c.PodSandboxStats(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("unknown pod: %v", err)
	}
}

func TestVanishedCgroupReportsZeros(t *testing.T) {
	stopped := ctr("c3", "p1", nil)
	stopped.Running = false
	src := &fakeSources{ctrs: []ContainerTarget{ctr("c1", "p1", nil), ctr("c2", "p1", nil), stopped}, pods: []PodTarget{{ID: "p1"}}}
	c, fc, logs := newTestCollector(t, 0, src, nil)
	fc.gone["/pods/p1/berth-c2"] = true
	for range 3 {
		list, err := c.ListContainerStats(context.Background(), nil)
		if err != nil || len(list) != 3 {
			t.Fatalf("list: %v, %v", list, err)
		}
		for _, st := range list {
			zero := st.GetAttributes().GetId() != "c1"
			if (st.GetMemory().GetWorkingSetBytes().GetValue() == 0) != zero {
				t.Fatalf("%s: %v", st.GetAttributes().GetId(), st)
			}
		}
	}
	if n := strings.Count(logs.String(), "cannot read cgroup"); n != 1 {
		t.Fatalf("%d warnings, want one:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "container=c2") {
		t.Fatalf("warning does not name c2:\n%s", logs)
	}
}

func TestListFilters(t *testing.T) {
	src := &fakeSources{
		ctrs: []ContainerTarget{
			ctr("aa1", "p1", map[string]string{"app": "web"}),
			ctr("aa2", "p1", map[string]string{"app": "db"}),
			ctr("bb1", "p2", map[string]string{"app": "web"}),
		},
		pods: []PodTarget{{ID: "p1", Labels: map[string]string{"tier": "a"}}, {ID: "p2", Labels: map[string]string{"tier": "b"}}},
	}
	c, _, _ := newTestCollector(t, 0, src, nil)
	ctx := context.Background()
	ids := func(list []*runtimeapi.ContainerStats) string {
		var out []string
		for _, s := range list {
			out = append(out, s.GetAttributes().GetId())
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		f    *runtimeapi.ContainerStatsFilter
		want string
	}{
		{nil, "aa1,aa2,bb1"},
		{&runtimeapi.ContainerStatsFilter{Id: "aa"}, "aa1,aa2"},
		{&runtimeapi.ContainerStatsFilter{PodSandboxId: "p2"}, "bb1"},
		{&runtimeapi.ContainerStatsFilter{LabelSelector: map[string]string{"app": "web"}}, "aa1,bb1"},
		{&runtimeapi.ContainerStatsFilter{PodSandboxId: "p1", LabelSelector: map[string]string{"app": "web"}}, "aa1"},
	} {
		list, err := c.ListContainerStats(ctx, tc.f)
		if err != nil || ids(list) != tc.want {
			t.Errorf("filter %v: %s (%v), want %s", tc.f, ids(list), err, tc.want)
		}
	}
	pods, err := c.ListPodSandboxStats(ctx, &runtimeapi.PodSandboxStatsFilter{LabelSelector: map[string]string{"tier": "b"}})
	if err != nil || len(pods) != 1 || pods[0].GetAttributes().GetId() != "p2" || len(pods[0].GetLinux().GetContainers()) != 1 {
		t.Fatalf("pod filter: %v, %v", pods, err)
	}
	if _, err := c.ContainerStats(ctx, "aa"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("ambiguous prefix: %v", err)
	}
}

func TestPodStats(t *testing.T) {
	src := &fakeSources{
		ctrs: []ContainerTarget{ctr("c1", "own", nil), ctr("c2", "shared", nil), ctr("c3", "shared", nil)},
		pods: []PodTarget{
			{ID: "own", Name: "own", Namespace: "ns", CgroupDir: "/pods/own", NetNS: "/run/netns/own"},
			{ID: "shared", Name: "shared"}, // cgroup shared with other pods, host network
		},
	}
	c, fc, _ := newTestCollector(t, 0, src, nil)
	ctx := context.Background()
	c.ListPodSandboxStats(ctx, nil)
	fc.advance(2*time.Second, map[string]float64{"/pods/own": 1.5, "/pods/shared/berth-c2": 0.5, "/pods/shared/berth-c3": 0.25})
	list, err := c.ListPodSandboxStats(ctx, nil)
	if err != nil || len(list) != 2 {
		t.Fatalf("%v, %v", list, err)
	}
	own, shared := list[0].GetLinux(), list[1].GetLinux()
	if got := own.GetCpu().GetUsageNanoCores().GetValue(); got != 1.5e9 {
		t.Errorf("own cgroup rate %d, want 1.5e9", got)
	}
	if got := shared.GetCpu().GetUsageNanoCores().GetValue(); got != 0.75e9 {
		t.Errorf("summed rate %d, want 0.75e9", got)
	}
	if got := shared.GetMemory().GetWorkingSetBytes().GetValue(); got != 120<<20 {
		t.Errorf("summed working set %d", got)
	}
	if got := shared.GetProcess().GetProcessCount().GetValue(); got != 4 {
		t.Errorf("summed processes %d", got)
	}
	n := own.GetNetwork()
	if n.GetDefaultInterface().GetName() != "eth0" || n.GetDefaultInterface().GetTxBytes().GetValue() != 2000 || len(n.GetInterfaces()) != 1 {
		t.Errorf("network %v", n)
	}
	if shared.GetNetwork() != nil {
		t.Errorf("host-network pod has network stats: %v", shared.GetNetwork())
	}
	if md := list[0].GetAttributes().GetMetadata(); md.GetName() != "own" || md.GetNamespace() != "ns" {
		t.Errorf("attributes %v", list[0].GetAttributes())
	}
}

// blockingLayers measures only when released.
type blockingLayers struct{ release chan struct{} }

func (b blockingLayers) LayerUsage(ctx context.Context, id string) (LayerUsage, error) {
	select {
	case <-b.release:
	case <-ctx.Done():
		return LayerUsage{}, ctx.Err()
	}
	return LayerUsage{Time: time.Now(), Mountpoint: "/var/lib/containers/storage", Bytes: 4096, Inodes: 3}, nil
}

// TestLayerNeverBlocks: a slow disk delays the writable layer numbers,
// never the RPC.
func TestLayerNeverBlocks(t *testing.T) {
	src := &fakeSources{ctrs: []ContainerTarget{ctr("c1", "p1", nil)}, pods: []PodTarget{{ID: "p1"}}}
	layers := blockingLayers{release: make(chan struct{})}
	c, _, _ := newTestCollector(t, 0, src, layers)
	start := time.Now()
	st, err := c.ContainerStats(context.Background(), "c1")
	if err != nil || st.GetWritableLayer() != nil || time.Since(start) > time.Second {
		t.Fatalf("%v, %v after %v", st, err, time.Since(start))
	}
	close(layers.release)
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _ = c.ContainerStats(context.Background(), "c1")
		if wl := st.GetWritableLayer(); wl != nil {
			if wl.GetUsedBytes().GetValue() != 4096 || wl.GetInodesUsed().GetValue() != 3 || wl.GetFsId().GetMountpoint() == "" {
				t.Fatalf("writable layer %v", wl)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("writable layer never measured")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPeriodicLoop: with a period, one goroutine samples and the RPCs
// read from memory; removed containers are forgotten.
func TestPeriodicLoop(t *testing.T) {
	src := &fakeSources{ctrs: []ContainerTarget{ctr("c1", "p1", nil), ctr("c2", "p1", nil)}, pods: []PodTarget{{ID: "p1"}}}
	c, fc, _ := newTestCollector(t, 20*time.Millisecond, src, nil)
	if _, err := c.ListContainerStats(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	fc.mu.Lock()
	reads := fc.reads
	fc.mu.Unlock()
	if reads < 6 {
		t.Fatalf("%d reads in 200ms at a 20ms period", reads)
	}
	src.mu.Lock()
	src.ctrs = src.ctrs[:1]
	src.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		_, kept := c.ctrs["c2"]
		c.mu.Unlock()
		if !kept {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("removed container still sampled")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPodSandboxMetricsMatchDescriptors(t *testing.T) {
	src := &fakeSources{
		ctrs: []ContainerTarget{ctr("c1", "p1", nil)},
		pods: []PodTarget{{ID: "p1", Name: "web", NetNS: "/run/netns/x"}},
	}
	c, _, _ := newTestCollector(t, 0, src, nil)
	keys := map[string]int{}
	for _, d := range c.MetricDescriptors() {
		if _, dup := keys[d.GetName()]; dup {
			t.Errorf("descriptor %s listed twice", d.GetName())
		}
		keys[d.GetName()] = len(d.GetLabelKeys())
	}
	pms, err := c.PodSandboxMetrics(context.Background())
	if err != nil || len(pms) != 1 || len(pms[0].GetContainerMetrics()) != 1 {
		t.Fatalf("%v, %v", pms, err)
	}
	all := append([]*runtimeapi.Metric(nil), pms[0].GetMetrics()...)
	all = append(all, pms[0].GetContainerMetrics()[0].GetMetrics()...)
	seen := map[string]bool{}
	for _, m := range all {
		n, ok := keys[m.GetName()]
		if !ok || n != len(m.GetLabelValues()) {
			t.Errorf("metric %s with labels %q does not match its descriptor", m.GetName(), m.GetLabelValues())
		}
		seen[m.GetName()] = true
	}
	for _, want := range []string{"container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "container_network_receive_bytes_total",
		// read from the cgroup's detail on demand
		"container_cpu_cfs_throttled_periods_total", "container_cpu_cfs_throttled_seconds_total", "container_spec_cpu_quota",
		"container_oom_events_total", "container_threads_max", "container_fs_reads_bytes_total"} {
		if !seen[want] {
			t.Errorf("no %s", want)
		}
	}
}

// BenchmarkListPodSandboxStats100 measures one ListPodSandboxStats of
// 100 pods of two containers each, answered from the periodic samples.
// Divide by 100 for the per-pod cost, which must not grow with pods.
func BenchmarkListPodSandboxStats100(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
			src := &fakeSources{}
			for i := range n {
				p := fmt.Sprintf("pod%04d", i)
				src.pods = append(src.pods, PodTarget{ID: p, CgroupDir: "/pods/" + p, NetNS: "/run/netns/" + p})
				src.ctrs = append(src.ctrs, ctr(p+"a", p, nil), ctr(p+"b", p, nil))
			}
			c, _, _ := newTestCollector(b, time.Hour, src, nil)
			ctx := context.Background()
			c.ListPodSandboxStats(ctx, nil) // starts the loop, which samples once
			b.ResetTimer()
			for range b.N {
				c.ListPodSandboxStats(ctx, nil)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/pod")
		})
	}
}

// lookupPrefix finds the one id in ids equal to, or uniquely prefixed
// by, idOrPrefix.
func lookupPrefix[T any](items []T, id func(T) string, idOrPrefix, kind string) (T, error) {
	var zero, found T
	n := 0
	for _, it := range items {
		switch {
		case id(it) == idOrPrefix:
			return it, nil
		case strings.HasPrefix(id(it), idOrPrefix):
			found = it
			n++
		}
	}
	switch n {
	case 0:
		return zero, fmt.Errorf("%s %q: %w", kind, idOrPrefix, errdefs.ErrNotFound)
	case 1:
		return found, nil
	}
	return zero, fmt.Errorf("%s id prefix %q is ambiguous: %w", kind, idOrPrefix, errdefs.ErrInvalidArgument)
}
