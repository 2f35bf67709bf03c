package stats

import (
	"context"
	"slices"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Label keys of the CRI metrics, as CRI-O and cAdvisor name them. A pod's
// own metrics carry its id and name and an empty image.
var (
	baseLabels    = []string{"id", "name", "image"}
	netLabels     = []string{"id", "name", "image", "interface"}
	fsLabels      = []string{"id", "name", "image", "device"}
	failureLabels = []string{"id", "name", "image", "failure_type", "scope"}
)

type descriptor struct {
	name, help string
	labels     []string
	kind       runtimeapi.MetricType
}

// descriptors are the metrics ListPodSandboxMetrics reports, in the
// order they are listed.
var descriptors = []descriptor{
	{"container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", baseLabels, runtimeapi.MetricType_COUNTER},
	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", baseLabels, runtimeapi.MetricType_GAUGE},
	{"container_memory_working_set_bytes", "Current working set in bytes.", baseLabels, runtimeapi.MetricType_GAUGE},
	{"container_memory_rss", "Size of RSS in bytes.", baseLabels, runtimeapi.MetricType_GAUGE},
	{"container_memory_swap", "Container swap usage in bytes.", baseLabels, runtimeapi.MetricType_GAUGE},
	{"container_memory_failures_total", "Cumulative count of memory allocation failures.", failureLabels, runtimeapi.MetricType_COUNTER},
	{"container_spec_memory_limit_bytes", "Memory limit for the container.", baseLabels, runtimeapi.MetricType_GAUGE},
	{"container_processes", "Number of processes running inside the container.", baseLabels, runtimeapi.MetricType_GAUGE},
	{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", fsLabels, runtimeapi.MetricType_GAUGE},
	{"container_last_seen", "Last time a container was seen by the exporter", baseLabels, runtimeapi.MetricType_GAUGE},
	{"container_network_receive_bytes_total", "Cumulative count of bytes received", netLabels, runtimeapi.MetricType_COUNTER},
	{"container_network_receive_packets_total", "Cumulative count of packets received", netLabels, runtimeapi.MetricType_COUNTER},
	{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving", netLabels, runtimeapi.MetricType_COUNTER},
	{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving", netLabels, runtimeapi.MetricType_COUNTER},
	{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", netLabels, runtimeapi.MetricType_COUNTER},
	{"container_network_transmit_packets_total", "Cumulative count of packets transmitted", netLabels, runtimeapi.MetricType_COUNTER},
	{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting", netLabels, runtimeapi.MetricType_COUNTER},
	{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting", netLabels, runtimeapi.MetricType_COUNTER},
}

// MetricDescriptors answers ListMetricDescriptors.
func (c *Collector) MetricDescriptors() []*runtimeapi.MetricDescriptor {
	out := make([]*runtimeapi.MetricDescriptor, 0, len(descriptors))
	for _, d := range descriptors {
		out = append(out, &runtimeapi.MetricDescriptor{Name: d.name, Help: d.help, LabelKeys: slices.Clone(d.labels)})
	}
	return out
}

// PodSandboxMetrics answers ListPodSandboxMetrics: per pod its network
// counters, per container its CPU, memory, process and filesystem use.
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
			r := c.containerUsage(t)
			var l *LayerUsage
			if lu, ok := c.layer(t.StorageID); ok && t.StorageID != "" {
				l = &lu
			}
			pm.ContainerMetrics = append(pm.ContainerMetrics, &runtimeapi.ContainerMetrics{
				ContainerId: t.ID,
				Metrics:     containerMetrics([]string{t.ID, t.Name, t.Image}, r, l),
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

func containerMetrics(base []string, r reading, l *LayerUsage) []*runtimeapi.Metric {
	counter, gauge := runtimeapi.MetricType_COUNTER, runtimeapi.MetricType_GAUGE
	u, ts := r.usage, r.usage.Time
	out := []*runtimeapi.Metric{
		metric("container_cpu_usage_seconds_total", r.cpu.Time, counter, base, r.cpu.Nanos/uint64(time.Second)),
		metric("container_memory_usage_bytes", ts, gauge, base, u.MemoryUsage),
		metric("container_memory_working_set_bytes", ts, gauge, base, u.WorkingSet),
		metric("container_memory_rss", ts, gauge, base, u.RSS),
		metric("container_memory_failures_total", ts, counter, with(base, "pgfault", "container"), u.PageFaults),
		metric("container_memory_failures_total", ts, counter, with(base, "pgmajfault", "container"), u.MajorPageFaults),
		metric("container_spec_memory_limit_bytes", ts, gauge, base, u.MemoryLimit),
		metric("container_processes", ts, gauge, base, u.Pids),
		metric("container_last_seen", ts, gauge, base, uint64(ts.Unix())),
	}
	if u.HasSwap {
		out = append(out, metric("container_memory_swap", ts, gauge, base, u.SwapUsage))
	}
	if l != nil {
		out = append(out, metric("container_fs_usage_bytes", l.Time, gauge, with(base, l.Mountpoint), l.Bytes))
	}
	return out
}

func networkMetrics(base []string, n netSample) []*runtimeapi.Metric {
	counter := runtimeapi.MetricType_COUNTER
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
