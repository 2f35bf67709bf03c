package pod

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/internal/errdefs"
)

// Resources is what the kubelet last told berth of a pod's resources
// (UpdatePodSandboxResources): its overhead and the sum of its
// containers' resources. Either may be nil.
type Resources struct {
	Overhead  *runtimeapi.LinuxContainerResources `json:"overhead,omitempty"`
	Resources *runtimeapi.LinuxContainerResources `json:"resources,omitempty"`
}

func (r *Resources) clone() *Resources {
	if r == nil {
		return nil
	}
	out := &Resources{}
	if r.Overhead != nil {
		out.Overhead = proto.Clone(r.Overhead).(*runtimeapi.LinuxContainerResources)
	}
	if r.Resources != nil {
		out.Resources = proto.Clone(r.Resources).(*runtimeapi.LinuxContainerResources)
	}
	return out
}

// UpdateResources records a ready pod's overhead and resources, and
// writes the limits they add up to to the pod's cgroup parent when berth
// made that cgroup for this pod alone (the kubelet makes and sets the
// pod cgroups of its QoS tree itself; berth's default parent is shared
// by every pod that names none, so it is never limited). The cgroup is
// written first: a failure there leaves the record as it was.
func (m *Manager) UpdateResources(ctx context.Context, idOrPrefix string, overhead, res *runtimeapi.LinuxContainerResources) error {
	for _, r := range []*runtimeapi.LinuxContainerResources{overhead, res} {
		if r.GetCpuShares() < 0 || r.GetCpuPeriod() < 0 || r.GetMemoryLimitInBytes() < 0 {
			return invalid("negative cpu shares, cpu period or memory limit")
		}
	}
	id, e, err := m.lookup(idOrPrefix)
	if err != nil {
		return err
	}
	if err := e.lockOp(ctx); err != nil {
		return err
	}
	defer e.op.Unlock()
	m.mu.Lock()
	st := e.st
	removed := e.removed
	m.mu.Unlock()
	if removed {
		return fmt.Errorf("pod sandbox %s: %w", id, errdefs.ErrNotFound)
	}
	if st.State != StateReady {
		return fmt.Errorf("pod sandbox %s is %s: %w", id, st.State, errdefs.ErrFailedPrecondition)
	}
	if m.ownsParent(e.rec, st) {
		if err := cgroups.SetLimits(e.rec.CgroupParent, podLimits(overhead, res)); err != nil {
			return fmt.Errorf("pod sandbox %s: %w", id, err)
		}
	}
	next := &Resources{Overhead: overhead, Resources: res}
	return m.setStatus(id, e, func(s *status) { s.Resources = next.clone() })
}

// ownsParent reports whether berth made the pod's cgroup parent for this
// pod: not the shared default, and created by this pod's creation.
func (m *Manager) ownsParent(rec *record, st status) bool {
	if m.cfg().Berth.Runtime.CgroupManager != "cgroupfs" || rec.CgroupParent == cgroups.DefaultParent {
		return false
	}
	// CgroupsCreated holds each hierarchy's mount point joined with
	// the parts of the parent that were missing.
	return slices.ContainsFunc(st.CgroupsCreated, func(dir string) bool {
		return strings.HasSuffix(dir, rec.CgroupParent)
	})
}

// podLimits adds a pod's overhead to the sum of its containers'
// resources. A quota or memory limit is set only when the containers
// have one: a pod whose containers are unlimited stays unlimited.
func podLimits(overhead, res *runtimeapi.LinuxContainerResources) cgroups.Limits {
	l := cgroups.Limits{
		CPUShares: uint64(res.GetCpuShares() + overhead.GetCpuShares()),
		CPUPeriod: uint64(res.GetCpuPeriod()),
	}
	if q := res.GetCpuQuota(); q > 0 {
		l.CPUQuota = q + max(overhead.GetCpuQuota(), 0)
	}
	if mem := res.GetMemoryLimitInBytes(); mem > 0 {
		l.Memory = mem + overhead.GetMemoryLimitInBytes()
	}
	return l
}
