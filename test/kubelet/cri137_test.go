//go:build kubelet

package kubelet

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berth-cri/berth/internal/cgroups"
)

// The scenarios of the CRI of Kubernetes 1.37 (issue 17): list streaming,
// in-place resize, Evented PLEG.

// berthMetrics scrapes berthd's /metrics from its unix socket.
func (e *env) berthMetrics() (map[string]*dto.MetricFamily, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", e.metrics)
		},
	}}
	resp, err := c.Get("http://berth/metrics")
	if err != nil {
		return nil, fmt.Errorf("scrape berthd metrics: %w", err)
	}
	defer resp.Body.Close()
	return parseMetrics(resp.Body)
}

// kubeletMetrics scrapes the kubelet's own /metrics.
func (e *env) kubeletMetrics() (map[string]*dto.MetricFamily, error) {
	b, err := httpGet(fmt.Sprintf("https://127.0.0.1:%d/metrics", e.port))
	if err != nil {
		return nil, err
	}
	return parseMetrics(strings.NewReader(string(b)))
}

func parseMetrics(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	return fams, nil
}

// opCount is berth_operations_total{operation=op}, 0 if absent.
func opCount(fams map[string]*dto.MetricFamily, op string) float64 {
	for _, m := range fams["berth_operations_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "operation" && l.GetValue() == op {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// testListStreams: with CRIListStreaming the kubelet lists pods,
// containers and images through the KEP-5825 streams, and never falls
// back to the unary lists (berth answers the streams; the kubelet's CRI
// client would switch to unary for good on Unimplemented). Nothing else
// lists through berthd's socket while the parallel scenarios run.
func testListStreams(t *testing.T, e *env) {
	streams := []string{"StreamPodSandboxes", "StreamContainers", "StreamImages"}
	unary := []string{"ListPodSandbox", "ListContainers", "ListImages"}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		fams, err := e.berthMetrics()
		if err != nil {
			t.Fatal(err)
		}
		missing := ""
		for _, s := range streams {
			if opCount(fams, s) == 0 {
				missing = s
			}
		}
		if missing == "" {
			var counts []string
			for _, op := range append(streams, unary...) {
				counts = append(counts, fmt.Sprintf("%s=%v", op, opCount(fams, op)))
			}
			t.Logf("berth_operations_total: %s", strings.Join(counts, " "))
			for _, u := range unary {
				if n := opCount(fams, u); n != 0 {
					t.Errorf("the kubelet called the unary %s %v times", u, n)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the kubelet never called %s within 2m", missing)
		}
		time.Sleep(2 * time.Second)
	}
}

// cgroupLimits is the command (the kubelet's /run splits it at spaces,
// no shell) printing the container's CPU quota and period, CPU shares
// (weight on v2) and memory limit, read inside it from its own cgroup
// (runc mounts the container's cgroup at /sys/fs/cgroup).
func cgroupLimits() string {
	if cgroups.IsUnified(cgroups.Root) {
		return "cat /sys/fs/cgroup/cpu.max /sys/fs/cgroup/cpu.weight /sys/fs/cgroup/memory.max"
	}
	return "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/memory/memory.limit_in_bytes"
}

// wantLimits is what cgroupLimits prints, fields joined by spaces.
func wantLimits(quota, period, shares, memory int64) string {
	if cgroups.IsUnified(cgroups.Root) {
		return fmt.Sprintf("%d %d %d %d", quota, period, cgroups.SharesToWeight(uint64(shares)), memory)
	}
	return fmt.Sprintf("%d %d %d %d", quota, period, shares, memory)
}

// resizePod is the resize scenario's pod. Its UID is fixed so that the
// kubelet takes a changed manifest as an update of the same pod (it
// derives the UID of a static pod from the file's content otherwise).
func resizePod(cpuReq, cpuLim, memLim string) *corev1.Pod {
	c := ctr("main", "echo resize-started; exec sleep 3600")
	c.Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpuReq), corev1.ResourceMemory: resource.MustParse("16Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpuLim), corev1.ResourceMemory: resource.MustParse(memLim)},
	}
	p := newPod("resize", c)
	p.UID = types.UID("6c0d0b0e-5b1a-4e8e-9a57-b3e7c0a1e2d4")
	return p
}

// testResize: a static pod whose manifest's resources change is resized
// in place: the same container keeps running (no restart) and its
// cgroup holds the new CPU quota, shares and memory limit.
func testResize(t *testing.T, e *env) {
	e.writeManifest(t, resizePod("100m", "200m", "64Mi"))
	t.Cleanup(func() { e.removeManifest(t, "resize") })
	before := e.waitPod(t, "resize", 3*time.Minute, running("main"))
	id := cstatus(before, "main").ContainerID
	e.waitCgroup(t, wantLimits(20000, 100000, 102, 64<<20))

	e.writeManifest(t, resizePod("150m", "300m", "96Mi"))
	after := e.waitPod(t, "resize", 2*time.Minute, func(p *corev1.Pod) string {
		cs := cstatus(p, "main")
		if cs == nil || cs.Resources == nil {
			return "no container resources in the status"
		}
		if l := cs.Resources.Limits; l.Cpu().MilliValue() != 300 || l.Memory().Value() != 96<<20 {
			return fmt.Sprintf("status limits %v, want cpu 300m memory 96Mi", l)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodResizePending || c.Type == corev1.PodResizeInProgress {
				return fmt.Sprintf("condition %s: %s %s", c.Type, c.Reason, c.Message)
			}
		}
		return ""
	})
	cs := cstatus(after, "main")
	if cs.ContainerID != id || cs.RestartCount != 0 || cs.State.Running == nil {
		t.Errorf("after the resize: container %s (was %s), restarts %d, state %+v", cs.ContainerID, id, cs.RestartCount, cs.State)
	}
	e.waitCgroup(t, wantLimits(30000, 100000, 153, 96<<20))
	// The kubelet told berth of the pod's new resources (best effort for
	// it; a failure would have rejected the resize) and of the container's.
	fams, err := e.berthMetrics()
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"UpdatePodSandboxResources", "UpdateContainerResources"} {
		n, failed := opCount(fams, op), opErrors(fams, op)
		t.Logf("%s: %v calls, %v failed", op, n, failed)
		if n == 0 || failed != 0 {
			t.Errorf("%s: %v calls, %v failed; want calls and no failure", op, n, failed)
		}
	}
}

// opErrors is berth_operations_errors_total{operation=op}, 0 if absent.
func opErrors(fams map[string]*dto.MetricFamily, op string) float64 {
	for _, m := range fams["berth_operations_errors_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "operation" && l.GetValue() == op {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// waitCgroup polls the resize pod's cgroup limits (through the kubelet's
// /run) until they are want.
func (e *env) waitCgroup(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := e.run("resize", "main", cgroupLimits())
		got := strings.Join(strings.Fields(out), " ")
		if err == nil && got == want {
			t.Logf("cgroup limits (quota period shares memory): %s", got)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cgroup limits (quota period shares memory): %q, %v; want %q", got, err, want)
		}
		time.Sleep(time.Second)
	}
}

// kubeletCounter sums the series of the kubelet metric name.
func kubeletCounter(fams map[string]*dto.MetricFamily, name string) float64 {
	var sum float64
	for _, m := range fams[name].GetMetric() {
		if h := m.GetHistogram(); h != nil {
			sum += float64(h.GetSampleCount())
		} else {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// testEventedExit: with EventedPLEG the kubelet holds berth's
// GetContainerEvents stream open and receives events on it, and a
// container exit reaches the pod's status. The latency from the exit's
// trigger to the status is measured and reported, not asserted (the
// kubelet's 1s generic relist would also see it; the events cut it short).
func testEventedExit(t *testing.T, e *env) {
	c := ctr("main", "echo evented-started; while [ ! -f /tmp/stop ]; do sleep 0.1; done; exit 7")
	p := newPod("evented", c)
	p.Spec.RestartPolicy = corev1.RestartPolicyNever
	e.writeManifest(t, p)
	t.Cleanup(func() { e.removeManifest(t, "evented") })
	e.waitPod(t, "evented", 3*time.Minute, running("main"))
	if _, err := e.run("evented", "main", "touch /tmp/stop"); err != nil {
		t.Fatalf("touch /tmp/stop: %v", err)
	}
	triggered := time.Now()
	exited := func(p *corev1.Pod) string {
		cs := cstatus(p, "main")
		if cs == nil || cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 7 {
			return "main not terminated with exit 7"
		}
		return ""
	}
	// Poll /pods tightly to measure; the bound is the harness's usual one.
	var latency time.Duration
	for deadline := triggered.Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if p, err := e.pod("evented"); err == nil && p != nil && exited(p) == "" {
			latency = time.Since(triggered)
			break
		}
		if time.Now().After(deadline) {
			e.waitPod(t, "evented", time.Second, exited) // fails with the status
		}
	}
	t.Logf("container exit seen in the kubelet's /pods %v after the exec that triggered it returned", latency.Round(time.Millisecond))
	fams, err := e.kubeletMetrics()
	if err != nil {
		t.Fatal(err)
	}
	conns := kubeletCounter(fams, "kubelet_evented_pleg_connection_success_count")
	errs := kubeletCounter(fams, "kubelet_evented_pleg_connection_error_count")
	events := kubeletCounter(fams, "kubelet_evented_pleg_connection_latency_seconds")
	t.Logf("kubelet evented PLEG: %v connections, %v errors, %v events received", conns, errs, events)
	if conns < 1 || events < 1 {
		t.Errorf("the kubelet's evented PLEG never received berth's container events (%v connections, %v events)", conns, events)
	}
	if errs != 0 {
		t.Errorf("the kubelet's evented PLEG stream failed %v times", errs)
	}
}

// waitCAdvisorFamilies polls the kubelet's /metrics/cadvisor, which with
// PodAndContainerStatsFromCRI is built from berth's
// ListPodSandboxMetrics, until the cAdvisor families below carry a sample
// for the container (statusID as the pod status gives it, "berth://ID").
func (e *env) waitCAdvisorFamilies(t *testing.T, statusID string) {
	t.Helper()
	_, id, _ := strings.Cut(statusID, "://")
	families := []string{
		"container_cpu_usage_seconds_total", "container_cpu_user_seconds_total", "container_memory_working_set_bytes",
		"container_memory_cache", "container_oom_events_total", "container_spec_cpu_shares", "container_start_time_seconds",
		"container_threads", "container_file_descriptors", "container_processes", "container_last_seen",
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		missing := families
		b, err := httpGet(fmt.Sprintf("https://127.0.0.1:%d/metrics/cadvisor", e.port))
		if err == nil {
			fams, perr := parseMetrics(strings.NewReader(string(b)))
			err = perr
			missing = nil
			for _, f := range families {
				if !hasSampleFor(fams[f], id) {
					missing = append(missing, f)
				}
			}
		}
		if err == nil && len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics/cadvisor has no sample for container %s of %v (error %v)", id, missing, err)
		}
		time.Sleep(2 * time.Second)
	}
}

// hasSampleFor reports whether a family has a sample labelled id=ID.
func hasSampleFor(f *dto.MetricFamily, id string) bool {
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "id" && l.GetValue() == id {
				return true
			}
		}
	}
	return false
}
