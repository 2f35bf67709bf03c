package stats

import (
	"context"
	"fmt"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/ident"
)

// ContainerStats reports one container by id or unique id prefix.
func (c *Collector) ContainerStats(_ context.Context, id string) (*runtimeapi.ContainerStats, error) {
	if c.opts.Containers == nil {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	t, err := c.opts.Containers.StatsContainer(id)
	if err != nil {
		return nil, err
	}
	c.ensure()
	return c.containerStats(t), nil
}

// ListContainerStats reports the containers matching f (nil: all). Ids
// match by prefix, labels exactly.
func (c *Collector) ListContainerStats(_ context.Context, f *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	c.ensure()
	all := c.containers()
	if c.period == 0 {
		// No loop forgets removed containers: a complete list does.
		c.prune(all, c.opts.Pods.StatsPods())
	}
	out := make([]*runtimeapi.ContainerStats, 0, len(all))
	for _, t := range all {
		if !strings.HasPrefix(t.ID, f.GetId()) || !strings.HasPrefix(t.PodID, f.GetPodSandboxId()) || !ident.LabelsMatch(t.Labels, f.GetLabelSelector()) {
			continue
		}
		out = append(out, c.containerStats(t))
	}
	return out, nil
}

// PodSandboxStats reports one pod, with its containers.
func (c *Collector) PodSandboxStats(_ context.Context, id string) (*runtimeapi.PodSandboxStats, error) {
	p, err := c.opts.Pods.StatsPod(id)
	if err != nil {
		return nil, err
	}
	c.ensure()
	var ctrs []ContainerTarget
	for _, t := range c.containers() {
		if t.PodID == p.ID {
			ctrs = append(ctrs, t)
		}
	}
	return c.podStats(p, ctrs), nil
}

// ListPodSandboxStats reports the pods matching f (nil: all).
func (c *Collector) ListPodSandboxStats(_ context.Context, f *runtimeapi.PodSandboxStatsFilter) ([]*runtimeapi.PodSandboxStats, error) {
	c.ensure()
	pods := c.opts.Pods.StatsPods()
	all := c.containers()
	if c.period == 0 {
		c.prune(all, pods)
	}
	byPod := groupByPod(all)
	out := make([]*runtimeapi.PodSandboxStats, 0, len(pods))
	for _, p := range pods {
		if !strings.HasPrefix(p.ID, f.GetId()) || !ident.LabelsMatch(p.Labels, f.GetLabelSelector()) {
			continue
		}
		out = append(out, c.podStats(p, byPod[p.ID]))
	}
	return out, nil
}

func groupByPod(all []ContainerTarget) map[string][]ContainerTarget {
	m := map[string][]ContainerTarget{}
	for _, t := range all {
		m[t.PodID] = append(m[t.PodID], t)
	}
	return m
}

func (c *Collector) containerStats(t ContainerTarget) *runtimeapi.ContainerStats {
	r := c.containerUsage(t)
	u := r.usage
	st := &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{
			Id:          t.ID,
			Metadata:    &runtimeapi.ContainerMetadata{Name: t.Name, Attempt: t.Attempt},
			Labels:      t.Labels,
			Annotations: t.Annotations,
		},
		Cpu:    cpuUsage(r),
		Memory: memoryUsage(u),
	}
	if u.HasSwap {
		st.Swap = &runtimeapi.SwapUsage{
			Timestamp:      u.Time.UnixNano(),
			SwapUsageBytes: &runtimeapi.UInt64Value{Value: u.SwapUsage},
		}
		if u.SwapLimit > 0 {
			st.Swap.SwapAvailableBytes = &runtimeapi.UInt64Value{Value: sub(u.SwapLimit, u.SwapUsage)}
		}
	}
	if l, ok := c.layer(t.StorageID); ok && t.StorageID != "" {
		st.WritableLayer = &runtimeapi.FilesystemUsage{
			Timestamp:  l.Time.UnixNano(),
			FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: l.Mountpoint},
			UsedBytes:  &runtimeapi.UInt64Value{Value: l.Bytes},
			InodesUsed: &runtimeapi.UInt64Value{Value: l.Inodes},
		}
	}
	return st
}

// cpuUsage reports the latest CPU reading, which may be newer than the
// rest of the sample, at its own time.
func cpuUsage(r reading) *runtimeapi.CpuUsage {
	cu := &runtimeapi.CpuUsage{
		Timestamp:            r.cpu.Time.UnixNano(),
		UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: r.cpu.Nanos},
	}
	if r.rateOK {
		cu.UsageNanoCores = &runtimeapi.UInt64Value{Value: r.rate}
	}
	return cu
}

func memoryUsage(u cgroups.Usage) *runtimeapi.MemoryUsage {
	m := &runtimeapi.MemoryUsage{
		Timestamp:       u.Time.UnixNano(),
		WorkingSetBytes: &runtimeapi.UInt64Value{Value: u.WorkingSet},
		UsageBytes:      &runtimeapi.UInt64Value{Value: u.MemoryUsage},
		RssBytes:        &runtimeapi.UInt64Value{Value: u.RSS},
		PageFaults:      &runtimeapi.UInt64Value{Value: u.PageFaults},
		MajorPageFaults: &runtimeapi.UInt64Value{Value: u.MajorPageFaults},
	}
	if u.MemoryLimit > 0 {
		m.AvailableBytes = &runtimeapi.UInt64Value{Value: sub(u.MemoryLimit, u.WorkingSet)}
	}
	return m
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// podUsage is the pod's cgroup sample and CPU rate: its own cgroup when
// it has one (its CPU counter read now, like a container's), else the
// sum of its containers as last read.
func (c *Collector) podUsage(p PodTarget, ctrs []ContainerTarget) reading {
	if p.CgroupDir != "" && c.reader != nil {
		c.mu.Lock()
		fresh := c.fresh(c.pods[p.ID])
		c.mu.Unlock()
		if !fresh || !c.sampleCPU(c.pods, p.ID, cgroups.PathDir(p.CgroupDir)) {
			c.samplePod(PodTarget{ID: p.ID, CgroupDir: p.CgroupDir})
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if s := c.pods[p.ID]; s != nil {
			return s.reading()
		}
	}
	sum := reading{usage: cgroups.Usage{Time: time.Now()}, rateOK: len(ctrs) > 0}
	c.mu.Lock()
	for _, t := range ctrs {
		s := c.ctrs[t.ID]
		if s == nil || !s.has {
			continue
		}
		u := s.latest
		sum.usage.MemoryUsage += u.MemoryUsage
		sum.usage.WorkingSet += u.WorkingSet
		sum.usage.RSS += u.RSS
		sum.usage.PageFaults += u.PageFaults
		sum.usage.MajorPageFaults += u.MajorPageFaults
		sum.usage.Pids += u.Pids
		// The sum is as of the newest of its readings.
		sum.cpu.Nanos += s.cpu.Nanos
		if s.cpu.Time.After(sum.cpu.Time) {
			sum.cpu.Time = s.cpu.Time
		}
		if t.Running {
			r, ok := s.rate()
			sum.rate += r
			sum.rateOK = sum.rateOK && ok
		}
	}
	c.mu.Unlock()
	if sum.cpu.Time.IsZero() {
		sum.cpu.Time = sum.usage.Time
	}
	sum.usage.CPUNanos = sum.cpu.Nanos
	return sum
}

// podNetwork returns the pod's interface counters, read now unless the
// loop read them recently.
func (c *Collector) podNetwork(p PodTarget) (netSample, bool) {
	if p.NetNS == "" {
		return netSample{}, false
	}
	c.mu.Lock()
	n, ok := c.nets[p.ID]
	c.mu.Unlock()
	if !ok || c.period == 0 || time.Since(n.time) >= 2*c.period {
		c.samplePod(PodTarget{ID: p.ID, NetNS: p.NetNS})
		c.mu.Lock()
		n, ok = c.nets[p.ID]
		c.mu.Unlock()
	}
	return n, ok
}

func (c *Collector) podStats(p PodTarget, ctrs []ContainerTarget) *runtimeapi.PodSandboxStats {
	ctrStats := make([]*runtimeapi.ContainerStats, 0, len(ctrs))
	for _, t := range ctrs {
		ctrStats = append(ctrStats, c.containerStats(t))
	}
	r := c.podUsage(p, ctrs)
	u := r.usage
	linux := &runtimeapi.LinuxPodSandboxStats{
		Cpu:    cpuUsage(r),
		Memory: memoryUsage(u),
		Process: &runtimeapi.ProcessUsage{
			Timestamp:    u.Time.UnixNano(),
			ProcessCount: &runtimeapi.UInt64Value{Value: u.Pids},
		},
		Containers: ctrStats,
	}
	if n, ok := c.podNetwork(p); ok {
		linux.Network = networkUsage(n)
	}
	return &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{
			Id:          p.ID,
			Metadata:    &runtimeapi.PodSandboxMetadata{Name: p.Name, Namespace: p.Namespace, Uid: p.UID, Attempt: p.Attempt},
			Labels:      p.Labels,
			Annotations: p.Annotations,
		},
		Linux: linux,
	}
}

// networkUsage reports eth0 (or the first interface) as the default and
// the others besides; loopback is left out.
func networkUsage(n netSample) *runtimeapi.NetworkUsage {
	nu := &runtimeapi.NetworkUsage{Timestamp: n.time.UnixNano()}
	var rest []*runtimeapi.NetworkInterfaceUsage
	for _, i := range n.ifs {
		if i.Name == "lo" {
			continue
		}
		iu := &runtimeapi.NetworkInterfaceUsage{
			Name:     i.Name,
			RxBytes:  &runtimeapi.UInt64Value{Value: i.RxBytes},
			RxErrors: &runtimeapi.UInt64Value{Value: i.RxErrors},
			TxBytes:  &runtimeapi.UInt64Value{Value: i.TxBytes},
			TxErrors: &runtimeapi.UInt64Value{Value: i.TxErrors},
		}
		if i.Name == DefaultInterface {
			nu.DefaultInterface = iu
			continue
		}
		rest = append(rest, iu)
	}
	if nu.DefaultInterface == nil && len(rest) > 0 {
		nu.DefaultInterface, rest = rest[0], rest[1:]
	}
	nu.Interfaces = rest
	return nu
}
