package e2e

import (
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestPodSandboxMetricsCarryCAdvisorFamilies: a container limited to half
// a CPU spins; ListPodSandboxMetrics reports the cAdvisor families the
// kubelet serves as /metrics/cadvisor, with values read from the real
// cgroup (the quota in force, throttling that happened, the process's
// threads, files and soft limits, its start time), each with the label
// keys its descriptor lists.
func TestPodSandboxMetricsCarryCAdvisorFamilies(t *testing.T) {
	e := startCtrEnv(t)
	d := e.d
	cfg := e.config("spinner", "sh", "-c", "ulimit -n 777; while :; do :; done")
	cfg.Linux = &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{
		CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 64 << 20,
	}}
	id := e.run(t, cfg)
	t.Cleanup(func() { e.stop(t, id, 0) })
	ctx := ctxT(t, time.Minute)

	desc, err := d.Runtime.ListMetricDescriptors(ctx, &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	labelKeys := map[string][]string{}
	for _, m := range desc.GetDescriptors() {
		labelKeys[m.GetName()] = m.GetLabelKeys()
	}
	for _, family := range []string{
		"container_cpu_usage_seconds_total", "container_cpu_user_seconds_total", "container_cpu_system_seconds_total",
		"container_cpu_cfs_periods_total", "container_cpu_cfs_throttled_periods_total", "container_cpu_cfs_throttled_seconds_total",
		"container_memory_usage_bytes", "container_memory_working_set_bytes", "container_memory_rss", "container_memory_cache",
		"container_memory_mapped_file", "container_memory_swap", "container_memory_failcnt", "container_memory_max_usage_bytes",
		"container_memory_failures_total", "container_memory_kernel_usage", "container_oom_events_total",
		"container_fs_usage_bytes", "container_fs_limit_bytes", "container_fs_inodes_free", "container_fs_inodes_total",
		"container_fs_reads_bytes_total", "container_fs_writes_bytes_total", "container_fs_reads_total", "container_fs_writes_total",
		"container_network_receive_bytes_total", "container_network_transmit_bytes_total",
		"container_spec_cpu_period", "container_spec_cpu_quota", "container_spec_cpu_shares", "container_spec_memory_limit_bytes",
		"container_spec_memory_swap_limit_bytes", "container_spec_memory_reservation_limit_bytes",
		"container_start_time_seconds", "container_last_seen", "container_threads", "container_threads_max",
		"container_processes", "container_sockets", "container_file_descriptors", "container_ulimits_soft",
	} {
		if _, ok := labelKeys[family]; !ok {
			t.Errorf("ListMetricDescriptors lacks %s", family)
		}
	}

	// Throttling needs the spinner to have run a few periods.
	values := map[string]uint64{}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := d.Runtime.ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		clear(values)
		for _, pm := range resp.GetPodMetrics() {
			for _, cm := range pm.GetContainerMetrics() {
				if cm.GetContainerId() != id {
					continue
				}
				for _, m := range cm.GetMetrics() {
					if keys := labelKeys[m.GetName()]; len(keys) != len(m.GetLabelValues()) {
						t.Fatalf("%s has labels %q, its descriptor %q", m.GetName(), m.GetLabelValues(), keys)
					}
					name := m.GetName()
					if name == "container_ulimits_soft" {
						name += "/" + m.GetLabelValues()[3]
					}
					if !strings.HasPrefix(name, "container_fs_") || values[name] == 0 {
						values[name] = m.GetValue().GetValue()
					}
				}
			}
		}
		if values["container_cpu_cfs_throttled_periods_total"] > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	for name, want := range map[string]uint64{
		"container_spec_cpu_quota":              50000,
		"container_spec_cpu_period":             100000,
		"container_spec_cpu_shares":             512,
		"container_spec_memory_limit_bytes":     64 << 20,
		"container_ulimits_soft/max_open_files": 777,
		"container_processes":                   1,
		"container_threads":                     1,
	} {
		if got, ok := values[name]; !ok || got != want {
			t.Errorf("%s = %d (reported: %v), want %d", name, got, ok, want)
		}
	}
	for _, positive := range []string{
		"container_cpu_cfs_periods_total", "container_cpu_cfs_throttled_periods_total", "container_file_descriptors",
		"container_fs_limit_bytes", "container_fs_inodes_total", "container_memory_max_usage_bytes",
	} {
		if values[positive] == 0 {
			t.Errorf("%s is 0 for a throttled spinning container", positive)
		}
	}
	if start := int64(values["container_start_time_seconds"]); start < time.Now().Add(-2*time.Minute).Unix() || start > time.Now().Unix() {
		t.Errorf("container_start_time_seconds = %d, now %d", start, time.Now().Unix())
	}
}
