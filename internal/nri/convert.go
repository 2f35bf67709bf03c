package nri

import (
	"maps"

	"github.com/containerd/nri/pkg/api"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ContainerMeta is what berth knows of a container besides its spec.
type ContainerMeta struct {
	ID, PodID, Name     string
	State               api.ContainerState
	Labels, Annotations map[string]string
	Pid                 uint32
	// CreatedAt, StartedAt and FinishedAt are in nanoseconds.
	CreatedAt, StartedAt, FinishedAt int64
	ExitCode                         int32
	Reason, Message                  string
}

// FromSpec describes a container to plugins: its meta and what its OCI
// spec says (args, env, mounts, hooks, rlimits, namespaces, devices,
// resources, OOM score, cgroups path, I/O priority, seccomp, user).
func FromSpec(m ContainerMeta, s *rspec.Spec) *Container {
	c := &Container{
		Id: m.ID, PodSandboxId: m.PodID, Name: m.Name, State: m.State,
		Labels: maps.Clone(m.Labels), Annotations: maps.Clone(m.Annotations), Pid: m.Pid,
		CreatedAt: m.CreatedAt, StartedAt: m.StartedAt, FinishedAt: m.FinishedAt,
		ExitCode: m.ExitCode, StatusReason: m.Reason, StatusMessage: m.Message,
	}
	if s == nil {
		return c
	}
	// The spec's annotations are the ones the runtime sees; the request's
	// labels stay as they are.
	if len(s.Annotations) > 0 {
		c.Annotations = maps.Clone(s.Annotations)
	}
	c.Mounts = api.FromOCIMounts(s.Mounts)
	c.Hooks = api.FromOCIHooks(s.Hooks)
	if p := s.Process; p != nil {
		c.Args = append([]string(nil), p.Args...)
		c.Env = append([]string(nil), p.Env...)
		for _, r := range p.Rlimits {
			c.Rlimits = append(c.Rlimits, &api.POSIXRlimit{Type: r.Type, Hard: r.Hard, Soft: r.Soft})
		}
		c.User = &api.User{Uid: p.User.UID, Gid: p.User.GID, AdditionalGids: append([]uint32(nil), p.User.AdditionalGids...)}
	}
	if l := s.Linux; l != nil {
		lc := &api.LinuxContainer{
			Namespaces:  api.FromOCILinuxNamespaces(l.Namespaces),
			Devices:     api.FromOCILinuxDevices(l.Devices),
			Resources:   api.FromOCILinuxResources(l.Resources, nil),
			CgroupsPath: l.CgroupsPath,
			Sysctl:      maps.Clone(l.Sysctl),
		}
		if l.Seccomp != nil {
			lc.SeccompPolicy = api.FromOCILinuxSeccomp(l.Seccomp)
		}
		if p := s.Process; p != nil {
			if p.OOMScoreAdj != nil {
				lc.OomScoreAdj = api.Int(*p.OOMScoreAdj)
			}
			lc.IoPriority = api.FromOCILinuxIOPriority(p.IOPriority)
			lc.Scheduler = api.FromOCILinuxScheduler(p.Scheduler)
		}
		c.Linux = lc
	}
	return c
}

// fromCRIResources is the NRI form of CRI container resources.
func FromCRIResources(r *runtimeapi.LinuxContainerResources) *api.LinuxResources {
	if r == nil {
		return nil
	}
	out := &api.LinuxResources{
		Cpu:     &api.LinuxCPU{Cpus: r.GetCpusetCpus(), Mems: r.GetCpusetMems()},
		Memory:  &api.LinuxMemory{},
		Unified: maps.Clone(r.GetUnified()),
	}
	if v := r.GetCpuShares(); v != 0 {
		out.Cpu.Shares = api.UInt64(uint64(v))
	}
	if v := r.GetCpuQuota(); v != 0 {
		out.Cpu.Quota = api.Int64(v)
	}
	if v := r.GetCpuPeriod(); v != 0 {
		out.Cpu.Period = api.UInt64(uint64(v))
	}
	if v := r.GetMemoryLimitInBytes(); v != 0 {
		out.Memory.Limit = api.Int64(v)
	}
	if v := r.GetMemorySwapLimitInBytes(); v != 0 {
		out.Memory.Swap = api.Int64(v)
	}
	for _, h := range r.GetHugepageLimits() {
		out.HugepageLimits = append(out.HugepageLimits, &api.HugepageLimit{PageSize: h.GetPageSize(), Limit: h.GetLimit()})
	}
	return out
}

// toCRIResources is the CRI form of NRI resources, nil for none.
func toCRIResources(r *api.LinuxResources) *runtimeapi.LinuxContainerResources {
	if r == nil {
		return nil
	}
	return mergeCRIResources(nil, r)
}

// mergeCRIResources returns base with what r sets laid over it.
func mergeCRIResources(base *runtimeapi.LinuxContainerResources, r *api.LinuxResources) *runtimeapi.LinuxContainerResources {
	out := &runtimeapi.LinuxContainerResources{}
	if base != nil {
		out = proto.Clone(base).(*runtimeapi.LinuxContainerResources)
	}
	if r == nil {
		return out
	}
	if c := r.GetCpu(); c != nil {
		if v := c.GetShares(); v != nil {
			out.CpuShares = int64(v.GetValue())
		}
		if v := c.GetQuota(); v != nil {
			out.CpuQuota = v.GetValue()
		}
		if v := c.GetPeriod(); v != nil {
			out.CpuPeriod = int64(v.GetValue())
		}
		if c.GetCpus() != "" {
			out.CpusetCpus = c.GetCpus()
		}
		if c.GetMems() != "" {
			out.CpusetMems = c.GetMems()
		}
	}
	if m := r.GetMemory(); m != nil {
		if v := m.GetLimit(); v != nil {
			out.MemoryLimitInBytes = v.GetValue()
		}
		if v := m.GetSwap(); v != nil {
			out.MemorySwapLimitInBytes = v.GetValue()
		}
	}
	if hp := r.GetHugepageLimits(); len(hp) > 0 {
		out.HugepageLimits = nil
		for _, h := range hp {
			out.HugepageLimits = append(out.HugepageLimits, &runtimeapi.HugepageLimit{PageSize: h.GetPageSize(), Limit: h.GetLimit()})
		}
	}
	if len(r.GetUnified()) > 0 {
		if out.Unified == nil {
			out.Unified = map[string]string{}
		}
		maps.Copy(out.Unified, r.GetUnified())
	}
	return out
}
