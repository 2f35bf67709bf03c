// Package pod manages pod sandboxes: a creation pipeline with an undo
// stack (record, log dir, cgroup, pinned namespaces, /dev/shm, DNS and
// host files, CNI, PID-namespace holder), stop and remove that are
// idempotent, and versioned on-disk records. It needs no image: a pod is
// namespaces, files and a network attachment.
package pod

import (
	"time"

	"github.com/berth-cri/berth/internal/idmap"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/nsmgr"
)

// State is a pod's lifecycle state as the CRI knows it.
type State string

const (
	// StateCreating is never visible: a pod.json without status.json (or
	// with one in this state) was left by a crash mid-creation and is
	// garbage for the restart logic.
	StateCreating State = "creating"
	StateReady    State = "ready"
	StateNotReady State = "notready"
)

// Mode is how a pod shares a namespace kind.
type Mode string

const (
	// ModePod: one namespace for the pod, shared by its containers.
	ModePod Mode = "pod"
	// ModeNode: the host's namespace.
	ModeNode Mode = "node"
	// ModeContainer: each container has its own (pid only).
	ModeContainer Mode = "container"
)

// Metadata identifies a pod the way the kubelet does; a retried
// RunPodSandbox with equal Metadata gets the same pod.
type Metadata struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	UID       string `json:"uid"`
	Attempt   uint32 `json:"attempt"`
}

// Namespaces records how each namespace kind is shared.
type Namespaces struct {
	Network Mode `json:"network"`
	PID     Mode `json:"pid"`
	IPC     Mode `json:"ipc"`
}

// DNS is the resolv.conf the pod was asked for.
type DNS struct {
	Servers  []string `json:"servers,omitempty"`
	Searches []string `json:"searches,omitempty"`
	Options  []string `json:"options,omitempty"`
}

// record is pod.json: what the pod is. Written once at creation.
type record struct {
	Version        int                   `json:"version"`
	ID             string                `json:"id"`
	Metadata       Metadata              `json:"metadata"`
	CreatedAt      time.Time             `json:"created_at"`
	RuntimeHandler string                `json:"runtime_handler"`
	Labels         map[string]string     `json:"labels,omitempty"`
	Annotations    map[string]string     `json:"annotations,omitempty"`
	Hostname       string                `json:"hostname"`
	Namespaces     Namespaces            `json:"namespaces"`
	DNS            *DNS                  `json:"dns,omitempty"`
	PortMappings   []network.PortMapping `json:"port_mappings,omitempty"`
	Sysctls        map[string]string     `json:"sysctls,omitempty"`
	CgroupParent   string                `json:"cgroup_parent"`
	LogDirectory   string                `json:"log_directory,omitempty"`
	ShmSize        int64                 `json:"shm_size,omitempty"`
	Privileged     bool                  `json:"privileged,omitempty"`
	// UserNS is the mapping of the pod's own user namespace; nil for the
	// host's.
	UserNS *idmap.Mappings `json:"userns,omitempty"`
	// Paths are fixed at creation so teardown never recomputes them from
	// a config that may have changed since.
	NSPaths        nsmgr.Paths `json:"ns_paths"`
	ShmPath        string      `json:"shm_path,omitempty"`
	ResolvConfPath string      `json:"resolv_conf_path"`
	HostnamePath   string      `json:"hostname_path"`
	HostsPath      string      `json:"hosts_path"`
	RunDir         string      `json:"run_dir"`
}

// status is status.json: the mutable state machine of a pod.
type status struct {
	Version int       `json:"version"`
	State   State     `json:"state"`
	Updated time.Time `json:"updated"`
	// Network is the CNI network the pod is attached to; "" once torn
	// down (or for host-network pods).
	Network string   `json:"network,omitempty"`
	IPs     []string `json:"ips,omitempty"`
	// CgroupsCreated are the cgroup dirs berth made for this pod and
	// removes with it.
	CgroupsCreated []string `json:"cgroups_created,omitempty"`
	LogDirCreated  bool     `json:"log_dir_created,omitempty"`
	Holder         *Holder  `json:"holder,omitempty"`
	// Resources are the pod's last UpdatePodSandboxResources.
	Resources *Resources `json:"resources,omitempty"`
}

// Holder is the PID-namespace holder process of a pod sharing one PID
// namespace.
type Holder struct {
	ContainerID string `json:"container_id"`
	Pid         int    `json:"pid"`
	BundleDir   string `json:"bundle_dir"`
}

const recordVersion = 1

// Sandbox is a read-only snapshot of a pod for the CRI layer and the
// container manager; changing it changes nothing.
type Sandbox struct {
	ID             string            `json:"id,omitempty"`
	Metadata       Metadata          `json:"metadata,omitempty"`
	State          State             `json:"state,omitempty"`
	CreatedAt      time.Time         `json:"created_at,omitempty"`
	RuntimeHandler string            `json:"runtime_handler,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	Annotations    map[string]string `json:"annotations,omitempty"`
	Hostname       string            `json:"hostname,omitempty"`
	Namespaces     Namespaces        `json:"namespaces,omitempty"`
	// NetNS, IPCNS and UTSNS are the pinned namespace paths; "" means the
	// host's namespace (or, after StopPodSandbox, that it is gone).
	NetNS string `json:"netns,omitempty"`
	IPCNS string `json:"ipcns,omitempty"`
	UTSNS string `json:"utsns,omitempty"`
	// PIDNS is /proc/<holder>/ns/pid for a pod sharing one PID namespace,
	// else ""; HolderPID is that holder's pid, else 0.
	PIDNS string `json:"pidns,omitempty"`
	// UserNS is the pinned user namespace of a pod with hostUsers:
	// false ("" otherwise, or once stopped); IDMappings its mapping.
	UserNS     string          `json:"userns,omitempty"`
	IDMappings *idmap.Mappings `json:"id_mappings,omitempty"`
	HolderPID  int             `json:"holder_pid,omitempty"`
	// CgroupParent is the parent of the pod's containers' cgroups: a path
	// for cgroupfs, a slice name for systemd.
	CgroupParent string `json:"cgroup_parent,omitempty"`
	// ShmPath is the pod's /dev/shm tmpfs; "" when IPC is the host's
	// (containers then use the host's /dev/shm).
	ShmPath        string                `json:"shm_path,omitempty"`
	ResolvConfPath string                `json:"resolv_conf_path,omitempty"`
	HostnamePath   string                `json:"hostname_path,omitempty"`
	HostsPath      string                `json:"hosts_path,omitempty"`
	LogDirectory   string                `json:"log_directory,omitempty"`
	IPs            []string              `json:"ips,omitempty"`
	PortMappings   []network.PortMapping `json:"port_mappings,omitempty"`
	Sysctls        map[string]string     `json:"sysctls,omitempty"`
	DNS            *DNS                  `json:"dns,omitempty"`
	Privileged     bool                  `json:"privileged,omitempty"`
	Network        string                `json:"network,omitempty"`
	// Resources are the pod's last UpdatePodSandboxResources, if any.
	Resources *Resources `json:"resources,omitempty"`
}

// Filter selects pods for List; zero fields match everything.
type Filter struct {
	// ID matches every pod whose id starts with it (a full id matches
	// exactly that pod).
	ID    string
	State State
	// Labels must all be present with equal values.
	Labels map[string]string
}
