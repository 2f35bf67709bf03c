package container

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/ident"
	"github.com/berth-cri/berth/internal/runtime"
)

func criState(s State) runtimeapi.ContainerState {
	switch s {
	case StateCreated:
		return runtimeapi.ContainerState_CONTAINER_CREATED
	case StateRunning:
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	case StateExited:
		return runtimeapi.ContainerState_CONTAINER_EXITED
	}
	return runtimeapi.ContainerState_CONTAINER_UNKNOWN
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// imageSpec is the image as ContainerStatus reports it: a name when the
// request named the image by id, so that the kubelet shows a name.
func (meta *Meta) imageSpec() *runtimeapi.ImageSpec {
	img := meta.Image.Image
	if (img == meta.Image.ID || img == "sha256:"+meta.Image.ID) && meta.Image.Name != "" {
		img = meta.Image.Name
	}
	return &runtimeapi.ImageSpec{Image: img, UserSpecifiedImage: meta.Image.UserSpecifiedImage, Annotations: meta.Image.Annotations}
}

func (meta *Meta) imageRef() string {
	if meta.Image.Digest != "" {
		return meta.Image.Digest
	}
	return meta.Image.ID
}

// criStatus builds the CRI status of c from its records.
func criStatus(meta *Meta, st Status) *runtimeapi.ContainerStatus {
	out := &runtimeapi.ContainerStatus{
		Id:          meta.ID,
		Metadata:    &runtimeapi.ContainerMetadata{Name: meta.CtrName, Attempt: meta.Attempt},
		State:       criState(st.State),
		CreatedAt:   meta.CreatedAt.UnixNano(),
		StartedAt:   nanos(st.StartedAt),
		FinishedAt:  nanos(st.FinishedAt),
		Image:       meta.imageSpec(),
		ImageRef:    meta.imageRef(),
		ImageId:     meta.Image.ID,
		Labels:      maps.Clone(meta.Labels),
		Annotations: maps.Clone(meta.Annotations),
		LogPath:     meta.LogPath,
		User: &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{
			Uid: int64(meta.User.UID), Gid: int64(meta.User.GID),
		}},
		StopSignal: signalEnum(meta.StopSignal),
	}
	for _, g := range meta.User.Groups() {
		out.User.Linux.SupplementalGroups = append(out.User.Linux.SupplementalGroups, int64(g))
	}
	if st.State == StateExited {
		out.ExitCode, out.Reason, out.Message = st.ExitCode, st.Reason, st.Message
	}
	for _, mt := range meta.Mounts {
		cm := &runtimeapi.Mount{
			ContainerPath: mt.ContainerPath, HostPath: mt.HostPath, Readonly: mt.Readonly,
			SelinuxRelabel: mt.SelinuxRelabel, Propagation: runtimeapi.MountPropagation(mt.Propagation),
		}
		if v := mt.Image; v != nil {
			// image_ref is the image's digest, as the container's own
			// image_ref is (the kubelet shows it as the volume's imageID).
			cm.Image = &runtimeapi.ImageSpec{Image: v.Image, ImageRef: v.Digest}
			cm.ImageSubPath = v.SubPath
		}
		out.Mounts = append(out.Mounts, cm)
	}
	if st.Resources != nil {
		out.Resources = &runtimeapi.ContainerResources{Linux: cloneResources(st.Resources)}
	}
	return out
}

func signalEnum(name string) runtimeapi.Signal {
	if v, ok := runtimeapi.Signal_value["SIGNAL_"+name]; ok {
		return runtimeapi.Signal(v)
	}
	return runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT
}

// Status answers ContainerStatus; verbose adds an "info" JSON document
// with the pids, bundle and OCI spec, as crictl inspect expects.
func (m *Manager) Status(_ context.Context, id string, verbose bool) (*runtimeapi.ContainerStatus, map[string]string, error) {
	c, err := m.get(id)
	if err != nil {
		return nil, nil, err
	}
	m.checkConmon(c)
	st := c.snapshot()
	out := criStatus(c.meta, st)
	if !verbose {
		return out, nil, nil
	}
	info := map[string]any{
		"sandboxID":      c.meta.PodID,
		"pid":            st.Init.PID,
		"conmonPid":      st.Conmon.PID,
		"bundle":         c.meta.Bundle,
		"runtimeHandler": c.meta.Handler,
		"runtime":        c.meta.Runtime,
		"name":           c.meta.Name,
		"user":           c.meta.User,
		"cgroupsPath":    c.meta.CgroupsPath,
	}
	if data, err := os.ReadFile(filepath.Join(c.meta.Bundle, "config.json")); err == nil {
		var s specs.Spec
		if json.Unmarshal(data, &s) == nil {
			info["runtimeSpec"] = s
		}
	}
	doc, err := json.Marshal(info)
	if err != nil {
		return nil, nil, err
	}
	return out, map[string]string{"info": string(doc)}, nil
}

// List answers ListContainers. Filters combine with AND.
func (m *Manager) List(f *runtimeapi.ContainerFilter) []*runtimeapi.Container {
	m.mu.RLock()
	all := make([]*container, 0, len(m.ctrs))
	for id, c := range m.ctrs {
		if !strings.HasPrefix(id, f.GetId()) {
			continue
		}
		if !strings.HasPrefix(c.meta.PodID, f.GetPodSandboxId()) {
			continue
		}
		all = append(all, c)
	}
	m.mu.RUnlock()
	out := make([]*runtimeapi.Container, 0, len(all))
	for _, c := range all {
		st := c.snapshot()
		if f.GetState() != nil && criState(st.State) != f.GetState().GetState() {
			continue
		}
		if !ident.LabelsMatch(c.meta.Labels, f.GetLabelSelector()) {
			continue
		}
		out = append(out, &runtimeapi.Container{
			Id: c.meta.ID, PodSandboxId: c.meta.PodID,
			Metadata: &runtimeapi.ContainerMetadata{Name: c.meta.CtrName, Attempt: c.meta.Attempt},
			Image:    c.meta.imageSpec(), ImageRef: c.meta.imageRef(), ImageId: c.meta.Image.ID,
			State: criState(st.State), CreatedAt: c.meta.CreatedAt.UnixNano(),
			Labels: maps.Clone(c.meta.Labels), Annotations: maps.Clone(c.meta.Annotations),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt < out[j].CreatedAt })
	return out
}

// event builds a lifecycle event: the container and the statuses of all
// the pod's containers (what the kubelet's evented PLEG caches); the CRI
// layer adds the pod's status.
func (m *Manager) event(c *container, typ runtimeapi.ContainerEventType) runtime.Event {
	ev := &runtimeapi.ContainerEventResponse{
		ContainerId:        c.meta.ID,
		ContainerEventType: typ,
		CreatedAt:          time.Now().UnixNano(),
	}
	for _, o := range m.podContainers(c.meta.PodID) {
		if typ == runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT && o == c {
			continue
		}
		ev.ContainersStatuses = append(ev.ContainersStatuses, criStatus(o.meta, o.snapshot()))
	}
	return runtime.Event{PodID: c.meta.PodID, ContainerEventResponse: ev}
}

// PodStatuses are the CRI statuses of the pod's containers, for the pod
// lifecycle events.
func (m *Manager) PodStatuses(podID string) []*runtimeapi.ContainerStatus {
	var out []*runtimeapi.ContainerStatus
	for _, c := range m.podContainers(podID) {
		out = append(out, criStatus(c.meta, c.snapshot()))
	}
	return out
}
