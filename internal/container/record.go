package container

import (
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/internal/runtime"
	"github.com/berth-cri/berth/internal/spec"
)

// On-disk records, one directory per container under
// <state_dir>/containers/<id>:
//
//	container.json  Meta: what the container is; written once, before
//	                conmon starts, so a crash leaves a record naming
//	                everything to clean up.
//	status.json     Status: the state machine, rewritten atomically on
//	                every transition.
//	exit, oom       conmon's files (the dir is conmon's --persist-dir):
//	                the exit code survives even if status.json is stale.
//
// The OCI config.json in the bundle is an output only; nothing is read
// back from it except the process for exec.
const (
	metaFile      = "container.json"
	statusFile    = "status.json"
	recordVersion = 1
)

// State is a container's place in its lifecycle. Transitions:
//
//	creating → created → running → exited
//	created → exited (stopped before start, or start failed)
//
// creating is only ever seen on disk (a crash mid-create).
type State string

const (
	StateCreating State = "creating"
	StateCreated  State = "created"
	StateRunning  State = "running"
	StateExited   State = "exited"
)

// Reasons reported in ContainerStatus.
const (
	ReasonCompleted   = "Completed"
	ReasonError       = "Error"
	ReasonOOMKilled   = "OOMKilled"
	ReasonConmonDied  = "ContainerMonitorDied"
	ReasonInterrupted = "CreateInterrupted"
)

// Mount is one CRI mount, kept for ContainerStatus.
type Mount struct {
	ContainerPath  string `json:"container_path"`
	HostPath       string `json:"host_path"`
	Readonly       bool   `json:"readonly,omitempty"`
	SelinuxRelabel bool   `json:"selinux_relabel,omitempty"`
	Propagation    int32  `json:"propagation,omitempty"`
	// Image is set for an image volume: the image it mounts, which the
	// container holds a reference on until it is removed.
	Image *ImageVolume `json:"image,omitempty"`
}

// ImageVolume is the image an image volume mounts.
type ImageVolume struct {
	// Image is the reference the request gave.
	Image string `json:"image"`
	// ID is the storage image ID; Digest a repo@digest (or the ID).
	ID      string `json:"id"`
	Digest  string `json:"digest"`
	SubPath string `json:"sub_path,omitempty"`
}

// ImageRef is the image a container runs, as requested and as resolved.
type ImageRef struct {
	// Image is the name or id the request gave.
	Image              string            `json:"image"`
	UserSpecifiedImage string            `json:"user_specified_image,omitempty"`
	Annotations        map[string]string `json:"annotations,omitempty"`
	// ID is the storage image id (what PullImage returns).
	ID string `json:"id"`
	// Name is a tag of the image, for display; Digest a repo@digest.
	Name   string `json:"name,omitempty"`
	Digest string `json:"digest,omitempty"`
}

// Meta is container.json. It never changes after creation.
type Meta struct {
	Version     int               `json:"version"`
	ID          string            `json:"id"`
	Name        string            `json:"name"` // the reserved k8s_… name
	PodID       string            `json:"pod_id"`
	CtrName     string            `json:"ctr_name"` // metadata.name
	Attempt     uint32            `json:"attempt"`
	Image       ImageRef          `json:"image"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	LogPath     string            `json:"log_path"`
	CreatedAt   time.Time         `json:"created_at"`
	// Runtime handler and what it resolved to at creation.
	Handler string      `json:"runtime_handler"`
	Runtime runtime.OCI `json:"runtime"`
	// Bundle is the OCI bundle (volatile, under the run dir).
	Bundle       string          `json:"bundle"`
	CgroupsPath  string          `json:"cgroups_path"`
	ConmonCgroup *cgroups.Cgroup `json:"conmon_cgroup,omitempty"`
	Mounts       []Mount         `json:"mounts,omitempty"`
	// StopSignal is the signal Stop sends first (a name like SIGTERM).
	StopSignal string    `json:"stop_signal"`
	Tty        bool      `json:"tty,omitempty"`
	Stdin      bool      `json:"stdin,omitempty"`
	StdinOnce  bool      `json:"stdin_once,omitempty"`
	User       spec.User `json:"user"`
	// HostPID is set when the container shares the host's PID namespace;
	// stopping it then signals every process of its cgroup.
	HostPID bool `json:"host_pid,omitempty"`
	// StorageID is the containers/storage container (the writable layer).
	StorageID string `json:"storage_id"`
}

// Status is status.json.
type Status struct {
	Version int   `json:"version"`
	State   State `json:"state"`
	// Removing is set when a removal starts: a crash part-way leaves a
	// record whose removal the next start finishes.
	Removing bool `json:"removing,omitempty"`
	// Conmon and Init identify conmon and the container's first process.
	Conmon     runtime.Proc `json:"conmon"`
	Init       runtime.Proc `json:"init"`
	StartedAt  time.Time    `json:"started_at,omitzero"`
	FinishedAt time.Time    `json:"finished_at,omitzero"`
	ExitCode   int32        `json:"exit_code"`
	Reason     string       `json:"reason,omitempty"`
	Message    string       `json:"message,omitempty"`
	// Resources are the CRI resources in effect (UpdateContainerResources
	// changes them).
	Resources *runtimeapi.LinuxContainerResources `json:"resources,omitempty"`
}

// status.json is written with store.WriteVolatile: atomically (temp file
// and rename) but without fsync, unlike container.json. The status is
// re-derivable after a power loss, the only case fsync guards against:
// the exit code is in conmon's exit file, "running" is checked against
// conmon's and the init's pid and start time, and every container is dead
// after a reboot anyway. Skipping two fsyncs per transition keeps a
// container cycle fast on a busy disk. A berthd crash loses nothing: the
// page cache survives it.
