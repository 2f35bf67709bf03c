package stats

import (
	"time"
)

// ContainerTarget is what the collector needs to know about a container.
type ContainerTarget struct {
	ID      string
	PodID   string
	Name    string
	Attempt uint32
	// Image names the container's image (for metric labels).
	Image       string
	Labels      map[string]string
	Annotations map[string]string
	CreatedAt   time.Time
	// StartedAt is zero until the container starts.
	StartedAt time.Time
	// CgroupPath is the OCI linux.cgroupsPath: "/parent/berth-ID" for
	// cgroupfs, "parent.slice:berth:ID" for systemd.
	CgroupPath string
	// Running is true while the container's processes may run; the
	// cgroup of a container that is not running is not read.
	Running bool
	// StorageID is the containers/storage container holding the
	// writable layer; "" when there is none.
	StorageID string
}

// PodTarget is what the collector needs to know about a pod.
type PodTarget struct {
	ID          string
	Name        string
	Namespace   string
	UID         string
	Attempt     uint32
	Labels      map[string]string
	Annotations map[string]string
	// CgroupDir is the pod's own cgroup (as CgroupPath or a cgroup
	// parent). It must be left "" when the cgroup is shared with other
	// pods: the pod is then the sum of its containers.
	CgroupDir string
	// NetNS is the pinned network namespace; "" for host network or a
	// stopped pod, which report no network stats.
	NetNS string
}

// ContainerSource lists the containers to measure. The container
// manager implements it (or the daemon adapts it).
type ContainerSource interface {
	// StatsContainers returns every container, in any state.
	StatsContainers() []ContainerTarget
	// StatsContainer returns the container with this id or unique id
	// prefix, or an error wrapping errdefs.ErrNotFound.
	StatsContainer(idOrPrefix string) (ContainerTarget, error)
}

// PodSource lists the pods to measure.
type PodSource interface {
	// StatsPods returns every pod, ready or not.
	StatsPods() []PodTarget
	// StatsPod returns the pod with this id or unique id prefix, or an
	// error wrapping errdefs.ErrNotFound.
	StatsPod(idOrPrefix string) (PodTarget, error)
}
