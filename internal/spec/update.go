package spec

import (
	"maps"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// An update (`runc update`) changes only the cgroup settings it is given:
// a missing or zero value leaves a setting as it is, and hugepage limits,
// devices and the OOM score are never changed. The functions here say
// what is in force after berth sent one, so that what berth records and
// reports (the OCI spec, ContainerStatus.resources) is what the cgroup
// holds.

// Kernel defaults, restored when an update that set a value the
// container was created without is undone.
const (
	defaultCPUShares = 1024
	defaultCPUPeriod = 100000
)

// UpdatedResources returns cur, the OCI resources in force, with the
// settings of sent (built by Resources for the update) applied. cur is
// not changed.
func UpdatedResources(cur, sent *specs.LinuxResources) *specs.LinuxResources {
	out := cloneOCIResources(cur)
	if sent == nil {
		return out
	}
	if c := sent.CPU; c != nil {
		if out.CPU == nil {
			out.CPU = &specs.LinuxCPU{}
		}
		if c.Shares != nil {
			out.CPU.Shares = ptr(*c.Shares)
		}
		if c.Quota != nil {
			out.CPU.Quota = ptr(*c.Quota)
		}
		if c.Period != nil {
			out.CPU.Period = ptr(*c.Period)
		}
		if c.Cpus != "" {
			out.CPU.Cpus = c.Cpus
		}
		if c.Mems != "" {
			out.CPU.Mems = c.Mems
		}
	}
	if m := sent.Memory; m != nil {
		if out.Memory == nil {
			out.Memory = &specs.LinuxMemory{}
		}
		if m.Limit != nil {
			out.Memory.Limit = ptr(*m.Limit)
		}
		if m.Swap != nil {
			out.Memory.Swap = ptr(*m.Swap)
		}
	}
	if sent.Pids != nil && valueOr(sent.Pids.Limit, 0) != 0 {
		out.Pids = &specs.LinuxPids{Limit: ptr(*sent.Pids.Limit)}
	}
	if len(sent.Unified) > 0 {
		if out.Unified == nil {
			out.Unified = map[string]string{}
		}
		maps.Copy(out.Unified, sent.Unified)
	}
	return out
}

// UpdatedCRIResources is the CRI side of UpdatedResources: cur, the CRI
// resources in force, with the values of upd that sent (built from upd
// by Resources) carried to the runtime. Settings Resources dropped (a
// controller the host lacks) or that an update cannot change keep their
// values. cur is not changed.
func UpdatedCRIResources(cur, upd *runtimeapi.LinuxContainerResources, sent *specs.LinuxResources) *runtimeapi.LinuxContainerResources {
	out := &runtimeapi.LinuxContainerResources{}
	if cur != nil {
		out = proto.Clone(cur).(*runtimeapi.LinuxContainerResources)
	}
	if sent == nil {
		return out
	}
	if c := sent.CPU; c != nil {
		if c.Shares != nil {
			out.CpuShares = upd.GetCpuShares()
		}
		if c.Quota != nil {
			out.CpuQuota = upd.GetCpuQuota()
		}
		if c.Period != nil {
			out.CpuPeriod = upd.GetCpuPeriod()
		}
		if c.Cpus != "" {
			out.CpusetCpus = upd.GetCpusetCpus()
		}
		if c.Mems != "" {
			out.CpusetMems = upd.GetCpusetMems()
		}
	}
	if m := sent.Memory; m != nil {
		if m.Limit != nil {
			out.MemoryLimitInBytes = upd.GetMemoryLimitInBytes()
		}
		// Resources sends a swap limit for a memory limit alone (none:
		// memory+swap equal to memory), so a 0 here means that, as at
		// creation.
		if m.Swap != nil {
			out.MemorySwapLimitInBytes = upd.GetMemorySwapLimitInBytes()
		}
	}
	if len(sent.Unified) > 0 {
		if out.Unified == nil {
			out.Unified = map[string]string{}
		}
		maps.Copy(out.Unified, sent.Unified)
	}
	return out
}

// RestoreResources returns the update that undoes sent on a container
// whose OCI resources were before: each setting sent changed goes back
// to its value in before, or to no limit (the kernel default for shares
// and period) where before had none. A cpuset before did not name is
// left as sent: the set it inherited is not known here.
func RestoreResources(before, sent *specs.LinuxResources) *specs.LinuxResources {
	out := &specs.LinuxResources{}
	if sent == nil {
		return out
	}
	if before == nil {
		before = &specs.LinuxResources{}
	}
	if c := sent.CPU; c != nil {
		was := specs.LinuxCPU{}
		if before.CPU != nil {
			was = *before.CPU
		}
		out.CPU = &specs.LinuxCPU{}
		if c.Shares != nil {
			out.CPU.Shares = ptr(valueOr(was.Shares, defaultCPUShares))
		}
		if c.Quota != nil {
			out.CPU.Quota = ptr(valueOr(was.Quota, -1))
		}
		if c.Period != nil {
			out.CPU.Period = ptr(valueOr(was.Period, defaultCPUPeriod))
		}
		out.CPU.Cpus, out.CPU.Mems = was.Cpus, was.Mems
	}
	if m := sent.Memory; m != nil {
		was := specs.LinuxMemory{}
		if before.Memory != nil {
			was = *before.Memory
		}
		out.Memory = &specs.LinuxMemory{}
		if m.Limit != nil {
			out.Memory.Limit = ptr(valueOr(was.Limit, -1))
		}
		if m.Swap != nil {
			out.Memory.Swap = ptr(valueOr(was.Swap, -1))
		}
	}
	if sent.Pids != nil && valueOr(sent.Pids.Limit, 0) != 0 {
		out.Pids = &specs.LinuxPids{Limit: ptr(int64(-1))}
		if before.Pids != nil && valueOr(before.Pids.Limit, 0) != 0 {
			out.Pids.Limit = ptr(*before.Pids.Limit)
		}
	}
	for k := range sent.Unified {
		if v, ok := before.Unified[k]; ok {
			if out.Unified == nil {
				out.Unified = map[string]string{}
			}
			out.Unified[k] = v
		}
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func valueOr[T any](p *T, def T) T {
	if p != nil {
		return *p
	}
	return def
}

// cloneOCIResources copies r deeply enough that the settings an update
// changes can be replaced without touching r; nil gives empty resources.
func cloneOCIResources(r *specs.LinuxResources) *specs.LinuxResources {
	out := &specs.LinuxResources{}
	if r == nil {
		return out
	}
	*out = *r
	out.Devices = append([]specs.LinuxDeviceCgroup(nil), r.Devices...)
	out.HugepageLimits = append([]specs.LinuxHugepageLimit(nil), r.HugepageLimits...)
	out.Unified = maps.Clone(r.Unified)
	if r.CPU != nil {
		c := *r.CPU
		out.CPU = &c
	}
	if r.Memory != nil {
		m := *r.Memory
		out.Memory = &m
	}
	if r.Pids != nil {
		p := *r.Pids
		out.Pids = &p
	}
	return out
}
