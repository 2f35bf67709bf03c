package e2e

import (
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// TestStatsCPUFromFirstCall: with the default collection period (10s), a
// container spinning a core reports its CPU use from the first calls,
// not only after the collector's second periodic sample. Two
// ContainerStats a second apart see the counter and its timestamp move
// and a rate on the second; berth stats, crictl stats and crictl statsp
// (which sample twice a second apart and failed with "cpu stat is not
// updated during sample") show it busy.
func TestStatsCPUFromFirstCall(t *testing.T) {
	crictl := testutil.BuildCrictl(t) // before berthd starts: a cold build takes minutes
	e := startCtrEnv(t)
	spin := e.run(t, e.config("spin", "sh", "-c", "while :; do :; done"))
	// sh as PID 1 ignores SIGTERM: no grace period.
	t.Cleanup(func() { e.stop(t, spin, 0) })

	stats := func() *runtimeapi.CpuUsage {
		t.Helper()
		resp, err := e.d.Runtime.ContainerStats(ctxT(t, 10*time.Second), &runtimeapi.ContainerStatsRequest{ContainerId: spin})
		if err != nil {
			t.Fatalf("ContainerStats: %v", err)
		}
		return resp.GetStats().GetCpu()
	}
	first := stats()
	time.Sleep(time.Second)
	second := stats()
	if second.GetTimestamp() <= first.GetTimestamp() {
		t.Errorf("CPU timestamp did not move: %d then %d", first.GetTimestamp(), second.GetTimestamp())
	}
	used := float64(second.GetUsageCoreNanoSeconds().GetValue()) - float64(first.GetUsageCoreNanoSeconds().GetValue())
	if used <= 0 {
		t.Errorf("usage core ns did not grow: %v then %v", first.GetUsageCoreNanoSeconds(), second.GetUsageCoreNanoSeconds())
	}
	cores := float64(second.GetUsageNanoCores().GetValue()) / 1e9
	if cores <= 0 || cores > float64(runtime.NumCPU())*1.1 {
		t.Errorf("second call: usage nano cores %v, want a busy container's (one core or less)", second.GetUsageNanoCores())
	}
	t.Logf("spinner: %.2f cores; %.0fms of CPU in %v", cores, used/1e6, time.Duration(second.GetTimestamp()-first.GetTimestamp()))

	// berth stats reports the runtime's rate, or measures one itself.
	rows := cliTable(t, cli(t, e.d, "stats", spin[:12]))
	if len(rows) != 2 || rows[0][2] != "CPU %" || cpuPercentCell(t, rows[1][2]) <= 0 {
		t.Errorf("berth stats: %q, want the spinner busy", rows)
	}

	// crictl computes CPU % from two ListContainerStats (ListPodSandboxStats
	// for statsp) a second apart.
	cfg := cliWrite(t, t.TempDir(), "crictl.yaml", fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\n", e.d.Socket, e.d.Socket))
	// crictlCPU runs crictl and returns the CPU % of the row whose
	// column idCol is the (truncated) id.
	crictlCPU := func(id string, idCol int, args ...string) float64 {
		t.Helper()
		out, err := exec.Command(crictl, append([]string{"--config", cfg}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("crictl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 2 && f[idCol] == id[:13] {
				return cpuPercentCell(t, f[2])
			}
		}
		t.Fatalf("crictl %s: no row for %s:\n%s", strings.Join(args, " "), id, out)
		return 0
	}
	// Rows: CONTAINER NAME CPU% ..., and POD (name) POD-ID CPU% MEM.
	if cpu := crictlCPU(spin, 0, "stats", "--id", spin); cpu <= 0 {
		t.Errorf("crictl stats: CPU %.2f%%, want the spinner busy", cpu)
	}
	// The pod shares the default cgroup parent: its CPU is its containers'.
	if cpu := crictlCPU(e.pod, 1, "statsp", "--id", e.pod); cpu <= 0 {
		t.Errorf("crictl statsp: CPU %.2f%%, want the pod busy", cpu)
	}
}

// cpuPercentCell parses a CPU % cell such as "98.52".
func cpuPercentCell(t *testing.T, cell string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(cell, 64)
	if err != nil {
		t.Fatalf("CPU %% cell %q: %v", cell, err)
	}
	return v
}
