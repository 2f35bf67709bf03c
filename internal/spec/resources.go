package spec

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/berth-cri/berth/internal/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Kernel limits of oom_score_adj.
const (
	minOOMScoreAdj = -1000
	maxOOMScoreAdj = 1000
)

var cpusetRE = regexp.MustCompile(`^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$`)

// Resources turns CRI resources into OCI cgroup settings for this host.
// Settings for controllers the host lacks are dropped and reported in
// adapted rather than passed on for runc to fail on: the kubelet sends
// hugepage limits even to nodes without a hugetlb hierarchy. pidsLimit
// is the configured default (0 or less: none). It is exported for
// UpdateContainerResources, which goes through the same checks.
func Resources(r *runtimeapi.LinuxContainerResources, pidsLimit int64, h *Host, adapted *[]string) (*specs.LinuxResources, error) {
	out := &specs.LinuxResources{}
	if r == nil {
		r = &runtimeapi.LinuxContainerResources{}
	}
	if r.GetCpuShares() < 0 || r.GetCpuPeriod() < 0 || r.GetMemoryLimitInBytes() < 0 {
		return nil, invalid("negative cpu shares, cpu period or memory limit")
	}
	for _, s := range []string{r.GetCpusetCpus(), r.GetCpusetMems()} {
		if s != "" && !cpusetRE.MatchString(s) {
			return nil, invalid("cpuset %q is not a list like 0-3,5", s)
		}
	}
	if s := r.GetCpusetCpus(); s != "" {
		if err := checkCPUSet("cpuset_cpus", s, h.OnlineCPUs); err != nil {
			return nil, err
		}
	}
	if s := r.GetCpusetMems(); s != "" {
		if err := checkCPUSet("cpuset_mems", s, h.OnlineMems); err != nil {
			return nil, err
		}
	}
	cpu := &specs.LinuxCPU{}
	cpuSet := false
	if r.GetCpuShares() > 0 || r.GetCpuQuota() != 0 || r.GetCpuPeriod() > 0 {
		if h.HasController("cpu") {
			if v := uint64(r.GetCpuShares()); v > 0 {
				cpu.Shares = &v
			}
			if v := r.GetCpuQuota(); v != 0 {
				cpu.Quota = &v
			}
			if v := uint64(r.GetCpuPeriod()); v > 0 {
				cpu.Period = &v
			}
			cpuSet = true
		} else {
			*adapted = append(*adapted, "no cpu cgroup controller: cpu shares/quota/period ignored")
		}
	}
	if r.GetCpusetCpus() != "" || r.GetCpusetMems() != "" {
		if h.HasController("cpuset") {
			cpu.Cpus, cpu.Mems = r.GetCpusetCpus(), r.GetCpusetMems()
			cpuSet = true
		} else {
			*adapted = append(*adapted, "no cpuset cgroup controller: cpuset ignored")
		}
	}
	if cpuSet {
		out.CPU = cpu
	}
	if lim := r.GetMemoryLimitInBytes(); lim > 0 || r.GetMemorySwapLimitInBytes() > 0 {
		if h.HasController("memory") {
			mem := &specs.LinuxMemory{}
			if lim > 0 {
				mem.Limit = &lim
			}
			swap := r.GetMemorySwapLimitInBytes()
			switch {
			case !h.SwapAccounting:
				if swap > 0 {
					*adapted = append(*adapted, "no swap accounting: memory swap limit ignored")
				}
			case swap > 0:
				if lim > 0 && swap < lim {
					return nil, invalid("memory swap limit %d is below the memory limit %d", swap, lim)
				}
				mem.Swap = &swap
			case lim > 0:
				// No swap asked for: memory+swap equal to memory means
				// no swap, as the kubelet intends on nodes with swap.
				mem.Swap = &lim
			}
			out.Memory = mem
		} else {
			*adapted = append(*adapted, "no memory cgroup controller: memory limits ignored")
		}
	}
	if pidsLimit > 0 {
		if h.HasController("pids") {
			out.Pids = &specs.LinuxPids{Limit: ptr(pidsLimit)}
		} else {
			*adapted = append(*adapted, "no pids cgroup controller: pids limit ignored")
		}
	}
	if hp := r.GetHugepageLimits(); len(hp) > 0 {
		if h.HasController("hugetlb") {
			for _, l := range hp {
				if !strings.HasSuffix(l.GetPageSize(), "B") {
					return nil, invalid("hugepage size %q is not like 2MB", l.GetPageSize())
				}
				out.HugepageLimits = append(out.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: l.GetPageSize(), Limit: l.GetLimit()})
			}
		} else {
			*adapted = append(*adapted, "no hugetlb cgroup controller: hugepage limits ignored")
		}
	}
	if u := r.GetUnified(); len(u) > 0 {
		if h.CgroupV2 {
			out.Unified = map[string]string{}
			keys := make([]string, 0, len(u))
			for k := range u {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if k == "" || strings.ContainsAny(k, "/\x00") || strings.HasPrefix(k, ".") {
					return nil, invalid("unified cgroup key %q is not a file name", k)
				}
				out.Unified[k] = u[k]
			}
		} else {
			*adapted = append(*adapted, "cgroup v1 host: unified (v2) cgroup settings ignored")
		}
	}
	return out, nil
}

// oomScoreAdj clamps the request to what berthd may grant: lowering it
// below berthd's own value needs CAP_SYS_RESOURCE, and runc would fail
// to write it otherwise.
func oomScoreAdj(v int64, h *Host, adapted *[]string) (int, error) {
	if v < minOOMScoreAdj || v > maxOOMScoreAdj {
		return 0, invalid("oom_score_adj %d is outside %d..%d", v, minOOMScoreAdj, maxOOMScoreAdj)
	}
	adj := int(v)
	if adj < h.OOMScoreAdj && !h.HasCap("CAP_SYS_RESOURCE") {
		*adapted = append(*adapted, fmt.Sprintf("no CAP_SYS_RESOURCE: oom_score_adj below %d raised to it", h.OOMScoreAdj))
		adj = h.OOMScoreAdj
	}
	return adj, nil
}

// CgroupsPath is the container's cgroup: for cgroupfs a path under the
// pod's parent, for systemd "slice:prefix:name".
func CgroupsPath(manager, parent, id string) string {
	if parent == "" {
		parent = cgroups.DefaultParentFor(manager)
	}
	if manager == "systemd" {
		return parent + ":berth:" + id
	}
	return strings.TrimSuffix(parent, "/") + "/berth-" + id
}
