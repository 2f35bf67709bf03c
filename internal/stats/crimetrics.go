package stats

import (
	"context"
	"slices"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cgroups"
)

// Label keys of the CRI metrics, as cAdvisor and CRI-O name them. A
// pod's own metrics carry its id and name and an empty image.
var (
	baseLabels    = []string{"id", "name", "image"}
	cpuLabels     = []string{"id", "name", "image", "cpu"}
	netLabels     = []string{"id", "name", "image", "interface"}
	fsLabels      = []string{"id", "name", "image", "device"}
	failureLabels = []string{"id", "name", "image", "failure_type", "scope"}
	ulimitLabels  = []string{"id", "name", "image", "ulimit"}
)

type descriptor struct {
	name, help string
	labels     []string
	kind       runtimeapi.MetricType
}

// descriptors are the cAdvisor container metric families (names, help,
// label keys and types as cAdvisor defines them) that
// ListPodSandboxMetrics reports, in the order they are listed. The
// kubelet serves them as its /metrics/cadvisor endpoint.
var descriptors = []descriptor{
	{"container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", cpuLabels, counter},
	{"container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", baseLabels, counter},
	{"container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", baseLabels, counter},
	{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", baseLabels, counter},
	{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", baseLabels, counter},
	{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", baseLabels, counter},
	{"container_memory_cache", "Number of bytes of page cache memory.", baseLabels, gauge},
	{"container_memory_rss", "Size of RSS in bytes.", baseLabels, gauge},
	{"container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", baseLabels, gauge},
	{"container_memory_mapped_file", "Size of memory mapped files in bytes.", baseLabels, gauge},
	{"container_memory_swap", "Container swap usage in bytes.", baseLabels, gauge},
	{"container_memory_failcnt", "Number of memory usage hits limits", baseLabels, counter},
	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", baseLabels, gauge},
	{"container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes", baseLabels, gauge},
	{"container_memory_working_set_bytes", "Current working set in bytes.", baseLabels, gauge},
	{"container_memory_failures_total", "Cumulative count of memory allocation failures.", failureLabels, counter},
	{"container_oom_events_total", "Count of out of memory events observed for the container", baseLabels, counter},
	{"container_fs_inodes_free", "Number of available Inodes", fsLabels, gauge},
	{"container_fs_inodes_total", "Number of Inodes", fsLabels, gauge},
	{"container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", fsLabels, gauge},
	{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", fsLabels, gauge},
	{"container_fs_reads_bytes_total", "Cumulative count of bytes read", fsLabels, counter},
	{"container_fs_reads_total", "Cumulative count of reads completed", fsLabels, counter},
	{"container_fs_writes_bytes_total", "Cumulative count of bytes written", fsLabels, counter},
	{"container_fs_writes_total", "Cumulative count of writes completed", fsLabels, counter},
	{"container_network_receive_bytes_total", "Cumulative count of bytes received", netLabels, counter},
	{"container_network_receive_packets_total", "Cumulative count of packets received", netLabels, counter},
	{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving", netLabels, counter},
	{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving", netLabels, counter},
	{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", netLabels, counter},
	{"container_network_transmit_packets_total", "Cumulative count of packets transmitted", netLabels, counter},
	{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting", netLabels, counter},
	{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting", netLabels, counter},
	{"container_spec_cpu_period", "CPU period of the container.", baseLabels, gauge},
	{"container_spec_cpu_quota", "CPU quota of the container.", baseLabels, gauge},
	{"container_spec_cpu_shares", "CPU share of the container.", baseLabels, gauge},
	{"container_spec_memory_limit_bytes", "Memory limit for the container.", baseLabels, gauge},
	{"container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", baseLabels, gauge},
	{"container_spec_memory_reservation_limit_bytes", "Memory reservation limit for the container.", baseLabels, gauge},
	{"container_start_time_seconds", "Start time of the container since unix epoch in seconds.", baseLabels, gauge},
	{"container_last_seen", "Last time a container was seen by the exporter", baseLabels, gauge},
	{"container_processes", "Number of processes running inside the container.", baseLabels, gauge},
	{"container_threads", "Number of threads running inside the container", baseLabels, gauge},
	{"container_threads_max", "Maximum number of threads allowed inside the container, infinity if value is zero", baseLabels, gauge},
	{"container_sockets", "Number of open sockets for the container.", baseLabels, gauge},
	{"container_file_descriptors", "Number of open file descriptors for the container.", baseLabels, gauge},
	{"container_ulimits_soft", "Soft ulimit values for the container root process. Unlimited if -1, except priority and nice", ulimitLabels, gauge},
}

const (
	counter = runtimeapi.MetricType_COUNTER
	gauge   = runtimeapi.MetricType_GAUGE
)

// MetricDescriptors answers ListMetricDescriptors.
func (c *Collector) MetricDescriptors() []*runtimeapi.MetricDescriptor {
	out := make([]*runtimeapi.MetricDescriptor, 0, len(descriptors))
	for _, d := range descriptors {
		out = append(out, &runtimeapi.MetricDescriptor{Name: d.name, Help: d.help, LabelKeys: slices.Clone(d.labels)})
	}
	return out
}

// PodSandboxMetrics answers ListPodSandboxMetrics: per pod its network
// counters, per container the cAdvisor families of its cgroup, its
// processes and its writable layer.
func (c *Collector) PodSandboxMetrics(_ context.Context) ([]*runtimeapi.PodSandboxMetrics, error) {
	c.ensure()
	pods := c.opts.Pods.StatsPods()
	all := c.containers()
	if c.period == 0 {
		c.prune(all, pods)
	}
	byPod := groupByPod(all)
	out := make([]*runtimeapi.PodSandboxMetrics, 0, len(pods))
	for _, p := range pods {
		pm := &runtimeapi.PodSandboxMetrics{PodSandboxId: p.ID}
		if n, ok := c.podNetwork(p); ok {
			pm.Metrics = networkMetrics([]string{p.ID, p.Name, ""}, n)
		}
		for _, t := range byPod[p.ID] {
			pm.ContainerMetrics = append(pm.ContainerMetrics, &runtimeapi.ContainerMetrics{
				ContainerId: t.ID,
				Metrics:     c.containerMetrics(t),
			})
		}
		out = append(out, pm)
	}
	return out, nil
}

func metric(name string, ts time.Time, kind runtimeapi.MetricType, labels []string, v uint64) *runtimeapi.Metric {
	return &runtimeapi.Metric{Name: name, Timestamp: ts.UnixNano(), MetricType: kind, LabelValues: labels, Value: &runtimeapi.UInt64Value{Value: v}}
}

// with returns base followed by more, leaving base unchanged.
func with(base []string, more ...string) []string {
	return append(slices.Clip(base), more...)
}

// seconds turns nanoseconds into the whole seconds a CRI metric (an
// integer) can carry.
func seconds(nanos uint64) uint64 { return nanos / uint64(time.Second) }

// containerMetrics reads what a container's metrics need: the (cached or
// fresh) usage sample, and on demand its cgroup's detail, its processes
// and its writable layer's filesystem. A container that does not run
// reports its spec and start time only.
func (c *Collector) containerMetrics(t ContainerTarget) []*runtimeapi.Metric {
	base := []string{t.ID, t.Name, t.Image}
	r := c.containerUsage(t)
	u, ts := r.usage, r.usage.Time
	out := []*runtimeapi.Metric{
		metric("container_cpu_usage_seconds_total", r.cpu.Time, counter, with(base, "total"), seconds(r.cpu.Nanos)),
		metric("container_memory_usage_bytes", ts, gauge, base, u.MemoryUsage),
		metric("container_memory_working_set_bytes", ts, gauge, base, u.WorkingSet),
		metric("container_memory_rss", ts, gauge, base, u.RSS),
		metric("container_memory_failures_total", ts, counter, with(base, "pgfault", "container"), u.PageFaults),
		metric("container_memory_failures_total", ts, counter, with(base, "pgmajfault", "container"), u.MajorPageFaults),
		metric("container_spec_memory_limit_bytes", ts, gauge, base, u.MemoryLimit),
		metric("container_spec_memory_swap_limit_bytes", ts, gauge, base, u.SwapLimit),
		metric("container_processes", ts, gauge, base, u.Pids),
		metric("container_last_seen", ts, gauge, base, uint64(ts.Unix())),
	}
	if start := t.StartedAt; !start.IsZero() {
		out = append(out, metric("container_start_time_seconds", ts, gauge, base, uint64(start.Unix())))
	}
	if u.HasSwap {
		out = append(out, metric("container_memory_swap", ts, gauge, base, u.SwapUsage))
	}
	if t.Running && t.CgroupPath != "" && c.reader != nil {
		if d, err := c.reader.ReadDetail(cgroups.PathDir(t.CgroupPath)); err == nil {
			out = append(out, detailMetrics(base, ts, d)...)
			out = append(out, processMetrics(base, ts, countProcs("/proc", d.Procs))...)
			out = append(out, ioMetrics(base, ts, d.IO)...)
		}
	}
	if l, ok := c.layer(t.StorageID); ok && t.StorageID != "" {
		out = append(out, layerMetrics(with(base, l.Mountpoint), l)...)
	}
	return out
}

// detailMetrics are the families read from a cgroup's Detail.
func detailMetrics(base []string, ts time.Time, d cgroups.Detail) []*runtimeapi.Metric {
	out := []*runtimeapi.Metric{
		metric("container_cpu_user_seconds_total", ts, counter, base, seconds(d.CPUUserNanos)),
		metric("container_cpu_system_seconds_total", ts, counter, base, seconds(d.CPUSystemNanos)),
		metric("container_cpu_cfs_periods_total", ts, counter, base, d.CFSPeriods),
		metric("container_cpu_cfs_throttled_periods_total", ts, counter, base, d.CFSThrottledPeriods),
		metric("container_cpu_cfs_throttled_seconds_total", ts, counter, base, seconds(d.CFSThrottledNanos)),
		metric("container_memory_cache", ts, gauge, base, d.Cache),
		metric("container_memory_kernel_usage", ts, gauge, base, d.KernelUsage),
		metric("container_memory_mapped_file", ts, gauge, base, d.MappedFile),
		metric("container_memory_failcnt", ts, counter, base, d.Failcnt),
		metric("container_memory_max_usage_bytes", ts, gauge, base, d.MaxUsage),
		metric("container_oom_events_total", ts, counter, base, d.OOMKills),
		metric("container_spec_cpu_period", ts, gauge, base, d.CPUPeriod),
		metric("container_spec_cpu_shares", ts, gauge, base, d.CPUShares),
		metric("container_spec_memory_reservation_limit_bytes", ts, gauge, base, d.MemoryReservation),
		metric("container_threads_max", ts, gauge, base, d.PidsMax),
	}
	// cAdvisor reports a quota only when there is one.
	if d.CPUQuota > 0 {
		out = append(out, metric("container_spec_cpu_quota", ts, gauge, base, uint64(d.CPUQuota)))
	}
	return out
}

// processMetrics are the families counted over a container's processes.
// An unlimited soft limit, -1 in cAdvisor, cannot be carried by the
// CRI's unsigned value and is left out.
func processMetrics(base []string, ts time.Time, pc procCounts) []*runtimeapi.Metric {
	out := []*runtimeapi.Metric{
		metric("container_threads", ts, gauge, base, pc.threads),
		metric("container_file_descriptors", ts, gauge, base, pc.fds),
		metric("container_sockets", ts, gauge, base, pc.sockets),
	}
	if pc.hasOpenFiles && pc.openFiles >= 0 {
		out = append(out, metric("container_ulimits_soft", ts, gauge, with(base, "max_open_files"), uint64(pc.openFiles)))
	}
	return out
}

// ioMetrics are the block I/O counters, per device.
func ioMetrics(base []string, ts time.Time, io []cgroups.DeviceIO) []*runtimeapi.Metric {
	var out []*runtimeapi.Metric
	for _, d := range io {
		l := with(base, blockDeviceName("/sys", d.Major, d.Minor))
		out = append(out,
			metric("container_fs_reads_bytes_total", ts, counter, l, d.ReadBytes),
			metric("container_fs_reads_total", ts, counter, l, d.Reads),
			metric("container_fs_writes_bytes_total", ts, counter, l, d.WriteBytes),
			metric("container_fs_writes_total", ts, counter, l, d.Writes),
		)
	}
	return out
}

// layerMetrics report the writable layer's use and its filesystem's
// size and inodes (statfs of the storage root, as cAdvisor reports the
// filesystem a container writes to).
func layerMetrics(labels []string, l LayerUsage) []*runtimeapi.Metric {
	out := []*runtimeapi.Metric{metric("container_fs_usage_bytes", l.Time, gauge, labels, l.Bytes)}
	var fs unix.Statfs_t
	if err := unix.Statfs(l.Mountpoint, &fs); err == nil {
		out = append(out,
			metric("container_fs_limit_bytes", l.Time, gauge, labels, fs.Blocks*uint64(fs.Bsize)),
			metric("container_fs_inodes_total", l.Time, gauge, labels, fs.Files),
			metric("container_fs_inodes_free", l.Time, gauge, labels, fs.Ffree),
		)
	}
	return out
}

func networkMetrics(base []string, n netSample) []*runtimeapi.Metric {
	var out []*runtimeapi.Metric
	for _, i := range n.ifs {
		if i.Name == "lo" {
			continue
		}
		l := with(base, i.Name)
		out = append(out,
			metric("container_network_receive_bytes_total", n.time, counter, l, i.RxBytes),
			metric("container_network_receive_packets_total", n.time, counter, l, i.RxPackets),
			metric("container_network_receive_errors_total", n.time, counter, l, i.RxErrors),
			metric("container_network_receive_packets_dropped_total", n.time, counter, l, i.RxDropped),
			metric("container_network_transmit_bytes_total", n.time, counter, l, i.TxBytes),
			metric("container_network_transmit_packets_total", n.time, counter, l, i.TxPackets),
			metric("container_network_transmit_errors_total", n.time, counter, l, i.TxErrors),
			metric("container_network_transmit_packets_dropped_total", n.time, counter, l, i.TxDropped),
		)
	}
	return out
}
