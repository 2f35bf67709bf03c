package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/internal/testutil"
)

// containerLimits prints, from inside a container, its cgroup's CPU
// shares (weight on v2), quota and period, cpuset, memory limit and
// pids limit.
const containerLimits = `if [ -f /sys/fs/cgroup/cpu.max ]; then
echo $(cat /sys/fs/cgroup/cpu.weight) $(cat /sys/fs/cgroup/cpu.max) $(cat /sys/fs/cgroup/cpuset.cpus) $(cat /sys/fs/cgroup/memory.max) $(cat /sys/fs/cgroup/pids.max)
else
echo $(cat /sys/fs/cgroup/cpu/cpu.shares) $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us) $(cat /sys/fs/cgroup/cpuset/cpuset.cpus) $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes) $(cat /sys/fs/cgroup/pids/pids.max)
fi`

// wantLimits is what containerLimits prints for these settings on this
// host's cgroup version.
func wantLimits(shares uint64, quota, period int64, cpus string, mem, pids int64) string {
	if cgroups.IsUnified(cgroups.Root) {
		return fmt.Sprintf("%d %d %d %s %d %d", cgroups.SharesToWeight(shares), quota, period, cpus, mem, pids)
	}
	return fmt.Sprintf("%d %d %d %s %d %d", shares, quota, period, cpus, mem, pids)
}

// TestUpdateContainerResourcesInPlace: CPU shares, quota, period,
// cpuset and memory limit change in the running container's cgroup, the
// configured pids limit stays, and ContainerStatus reports what is in
// force. Negative shares, a cpuset naming a CPU the host lacks and a
// memory limit below the container's usage are InvalidArgument and leave
// the old limits in place.
func TestUpdateContainerResourcesInPlace(t *testing.T) {
	e := startCtrEnvWith(t, testutil.DaemonOptions{BinDir: binDir, DropIns: map[string]string{
		"50-pids.toml": "[berth.runtime]\npids_limit = 200\n",
	}})
	// The shell holds ~40 MB in a variable and stays (no exec).
	id := e.run(t, e.config("resize", "sh", "-c",
		"x=$(head -c 40000000 /dev/zero | tr '\\0' x); touch /tmp/ready; while true; do sleep 1; done"))
	for deadline := time.Now().Add(time.Minute); e.exec(t, id, 5, "test", "-f", "/tmp/ready").GetExitCode() != 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the container never held its memory")
		}
	}
	limits := func() string {
		t.Helper()
		r := e.exec(t, id, 5, "sh", "-c", containerLimits)
		if r.GetExitCode() != 0 {
			t.Fatalf("read cgroup: %s", r.GetStderr())
		}
		return strings.TrimSpace(string(r.GetStdout()))
	}
	update := func(r *runtimeapi.LinuxContainerResources) error {
		_, err := e.d.Runtime.UpdateContainerResources(ctxT(t, 30*time.Second), &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: r})
		return err
	}

	set := &runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000,
		CpusetCpus: "0", CpusetMems: "0", MemoryLimitInBytes: 256 << 20}
	if err := update(set); err != nil {
		t.Fatal(err)
	}
	want := wantLimits(512, 50000, 100000, "0", 256<<20, 200)
	if got := limits(); got != want {
		t.Fatalf("cgroup after the update: %q, want %q (shares quota period cpus memory pids)", got, want)
	}
	reported := e.status(t, id).GetResources().GetLinux()
	if reported.GetCpuShares() != 512 || reported.GetCpuQuota() != 50000 || reported.GetCpuPeriod() != 100000 ||
		reported.GetCpusetCpus() != "0" || reported.GetMemoryLimitInBytes() != 256<<20 {
		t.Fatalf("ContainerStatus.resources after the update: %v", reported)
	}

	for _, bad := range []struct {
		what string
		r    *runtimeapi.LinuxContainerResources
		msg  string
	}{
		{"negative shares", &runtimeapi.LinuxContainerResources{CpuShares: -2}, "negative"},
		{"a cpuset the host lacks", &runtimeapi.LinuxContainerResources{CpusetCpus: "4095"}, "4095"},
		{"memory below usage", &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 8 << 20}, "current usage"},
	} {
		expectCode(t, update(bad.r), codes.InvalidArgument, bad.msg)
		if got := limits(); got != want {
			t.Errorf("after %s: cgroup %q, want the old %q", bad.what, got, want)
		}
		if now := e.status(t, id).GetResources().GetLinux(); !proto.Equal(now, reported) {
			t.Errorf("after %s: ContainerStatus.resources %v, want the old %v", bad.what, now, reported)
		}
	}

	// A decrease that the container fits in is applied.
	if err := update(&runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 128 << 20}); err != nil {
		t.Fatal(err)
	}
	if got, want := limits(), wantLimits(512, 50000, 100000, "0", 128<<20, 200); got != want {
		t.Fatalf("cgroup after the decrease: %q, want %q", got, want)
	}
}

// TestUpdatePodSandboxResources: the pod's overhead and resources are
// recorded (PodSandboxStatus verbose info shows them, across a berthd
// restart); a pod whose cgroup parent berth made for it gets the limits
// they add up to; bad requests are refused.
func TestUpdatePodSandboxResources(t *testing.T) {
	e := startCtrEnv(t)
	parent := fmt.Sprintf("/berth-e2e-podres-%d", os.Getpid())
	cfg := podConfig("podres")
	cfg.Linux.CgroupParent = parent
	pod := runPod(t, e.d, cfg)
	over := &runtimeapi.LinuxContainerResources{CpuShares: 10, MemoryLimitInBytes: 1 << 20}
	res := &runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 128 << 20}
	update := func(id string, over, res *runtimeapi.LinuxContainerResources) error {
		_, err := e.d.Runtime.UpdatePodSandboxResources(ctxT(t, 30*time.Second), &runtimeapi.UpdatePodSandboxResourcesRequest{
			PodSandboxId: id, Overhead: over, Resources: res})
		return err
	}
	if err := update(pod, over, res); err != nil {
		t.Fatal(err)
	}
	checkRecorded := func() {
		t.Helper()
		resp, err := e.d.Runtime.PodSandboxStatus(ctxT(t, 10*time.Second), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod, Verbose: true})
		if err != nil {
			t.Fatal(err)
		}
		var info struct {
			Resources struct {
				Overhead  *runtimeapi.LinuxContainerResources `json:"overhead"`
				Resources *runtimeapi.LinuxContainerResources `json:"resources"`
			} `json:"resources"`
		}
		if err := json.Unmarshal([]byte(resp.GetInfo()["info"]), &info); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(info.Resources.Overhead, over) || !proto.Equal(info.Resources.Resources, res) {
			t.Errorf("recorded resources %v / %v, want %v / %v", info.Resources.Overhead, info.Resources.Resources, over, res)
		}
	}
	checkRecorded()

	want := map[string]string{"cpu/cpu.shares": "522", "cpu/cpu.cfs_quota_us": "50000", "cpu/cpu.cfs_period_us": "100000",
		"memory/memory.limit_in_bytes": fmt.Sprint(129 << 20)}
	if cgroups.IsUnified(cgroups.Root) {
		want = map[string]string{"cpu.weight": fmt.Sprint(cgroups.SharesToWeight(522)), "cpu.max": "50000 100000", "memory.max": fmt.Sprint(129 << 20)}
	}
	checkCgroup := func() {
		t.Helper()
		for file, v := range want {
			dir, name := filepath.Split(file)
			b, err := os.ReadFile(filepath.Join(cgroups.Root, dir, parent, name))
			if err != nil || strings.TrimSpace(string(b)) != v {
				t.Errorf("pod cgroup %s: %q %v, want %q", file, b, err, v)
			}
		}
	}
	checkCgroup()

	expectCode(t, update(pod, nil, &runtimeapi.LinuxContainerResources{CpuShares: -1}), codes.InvalidArgument, "negative")
	expectCode(t, update("nosuchpod", nil, res), codes.NotFound)
	expectCode(t, update("", nil, res), codes.InvalidArgument)
	checkCgroup()

	e.d.Restart(t)
	checkRecorded()
}
