package spec

import (
	"encoding/json"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// created is what a container created with these resources has in force.
func created(t *testing.T, h *Host, r *runtimeapi.LinuxContainerResources) *specs.LinuxResources {
	t.Helper()
	var adapted []string
	res, err := Resources(r, 0, h, &adapted)
	if err != nil {
		t.Fatal(err)
	}
	res.Devices = []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	res.HugepageLimits = []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 << 20}}
	return res
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestUpdatedResourcesMemoryOnly: an update giving only a memory limit
// (what `berth update --memory` and crictl send when the container had
// no other settings to carry over) changes memory and swap, and keeps
// CPU, devices, hugepages and the OOM score as created.
func TestUpdatedResourcesMemoryOnly(t *testing.T) {
	h := fullHost()
	cur := &runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: 20000, CpuPeriod: 100000,
		MemoryLimitInBytes: 128 << 20, OomScoreAdj: 300,
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}}}
	curOCI := created(t, h, cur)
	before := jsonOf(t, curOCI)
	upd := &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20}
	var adapted []string
	sent, err := Resources(upd, 0, h, &adapted)
	if err != nil {
		t.Fatal(err)
	}

	oci := UpdatedResources(curOCI, sent)
	if *oci.Memory.Limit != 64<<20 || *oci.Memory.Swap != 64<<20 {
		t.Errorf("memory %+v", oci.Memory)
	}
	if *oci.CPU.Shares != 512 || *oci.CPU.Quota != 20000 || *oci.CPU.Period != 100000 {
		t.Errorf("cpu changed: %s", jsonOf(t, oci.CPU))
	}
	if len(oci.Devices) != 1 || len(oci.HugepageLimits) != 1 {
		t.Errorf("devices or hugepages changed: %s", jsonOf(t, oci))
	}
	if jsonOf(t, curOCI) != before {
		t.Errorf("the current resources were changed in place")
	}

	cri := UpdatedCRIResources(cur, upd, sent)
	want := proto.Clone(cur).(*runtimeapi.LinuxContainerResources)
	want.MemoryLimitInBytes = 64 << 20
	if !proto.Equal(cri, want) {
		t.Errorf("CRI resources %v, want %v", cri, want)
	}
	if cur.MemoryLimitInBytes != 128<<20 {
		t.Errorf("the current CRI resources were changed in place")
	}
}

// TestUpdatedResourcesAll: every setting an update can change is taken;
// what the host lacks a controller for is not claimed.
func TestUpdatedResourcesAll(t *testing.T) {
	h := fullHost()
	h.CgroupV2 = true
	cur := &runtimeapi.LinuxContainerResources{CpuShares: 2, MemoryLimitInBytes: 128 << 20, MemorySwapLimitInBytes: 256 << 20,
		Unified: map[string]string{"memory.high": "1", "pids.max": "10"}}
	upd := &runtimeapi.LinuxContainerResources{CpuShares: 1024, CpuQuota: 50000, CpuPeriod: 100000, CpusetCpus: "0", CpusetMems: "0",
		MemoryLimitInBytes: 96 << 20, OomScoreAdj: -999, Unified: map[string]string{"memory.high": "2"}}
	var adapted []string
	sent, err := Resources(upd, 0, h, &adapted)
	if err != nil {
		t.Fatal(err)
	}
	cri := UpdatedCRIResources(cur, upd, sent)
	want := &runtimeapi.LinuxContainerResources{CpuShares: 1024, CpuQuota: 50000, CpuPeriod: 100000, CpusetCpus: "0", CpusetMems: "0",
		MemoryLimitInBytes: 96 << 20, Unified: map[string]string{"memory.high": "2", "pids.max": "10"}}
	if !proto.Equal(cri, want) {
		t.Errorf("CRI resources %v, want %v", cri, want)
	}
	oci := UpdatedResources(created(t, h, cur), sent)
	if *oci.CPU.Shares != 1024 || oci.CPU.Cpus != "0" || *oci.Memory.Swap != 96<<20 || oci.Unified["pids.max"] != "10" || oci.Unified["memory.high"] != "2" {
		t.Errorf("OCI resources %s", jsonOf(t, oci))
	}

	// Without a cpu controller the CPU settings never reach the cgroup.
	h.Controllers["cpu"] = false
	sent, err = Resources(upd, 0, h, &adapted)
	if err != nil {
		t.Fatal(err)
	}
	if cri := UpdatedCRIResources(cur, upd, sent); cri.CpuShares != 2 || cri.CpuQuota != 0 {
		t.Errorf("CPU settings the host could not apply are reported: %v", cri)
	}
}

// TestRestoreResources: undoing an update puts back what was in force,
// and lifts limits the container did not have.
func TestRestoreResources(t *testing.T) {
	h := fullHost()
	before := created(t, h, &runtimeapi.LinuxContainerResources{CpuShares: 512, MemoryLimitInBytes: 128 << 20})
	upd := &runtimeapi.LinuxContainerResources{CpuShares: 256, CpuQuota: 10000, MemoryLimitInBytes: 64 << 20}
	var adapted []string
	sent, err := Resources(upd, 0, h, &adapted)
	if err != nil {
		t.Fatal(err)
	}
	undo := RestoreResources(before, sent)
	if *undo.CPU.Shares != 512 || *undo.CPU.Quota != -1 || undo.CPU.Period != nil {
		t.Errorf("cpu undo %s", jsonOf(t, undo.CPU))
	}
	if *undo.Memory.Limit != 128<<20 || *undo.Memory.Swap != 128<<20 {
		t.Errorf("memory undo %s", jsonOf(t, undo.Memory))
	}
	// Applying the undo after the update gives back what was in force
	// (quota -1, none, where there was no quota).
	back := UpdatedResources(UpdatedResources(before, sent), undo)
	if *back.CPU.Shares != 512 || *back.CPU.Quota != -1 || *back.Memory.Limit != 128<<20 || *back.Memory.Swap != 128<<20 {
		t.Errorf("after undo %s, want %s", jsonOf(t, back), jsonOf(t, before))
	}
	// A memory limit the container was created without is lifted.
	none := created(t, h, &runtimeapi.LinuxContainerResources{})
	if undo := RestoreResources(none, sent); *undo.Memory.Limit != -1 || *undo.CPU.Shares != defaultCPUShares {
		t.Errorf("undo on a container without limits: %s", jsonOf(t, undo))
	}
}
