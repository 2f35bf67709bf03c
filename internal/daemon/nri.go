package daemon

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/container"
	"github.com/berth-cri/berth/internal/nri"
	"github.com/berth-cri/berth/internal/pod"
)

// nriSource describes pods and containers to NRI plugins from the two
// managers: a pod from its snapshot, a container from its verbose status
// (meta and the OCI spec it runs with).
type nriSource struct {
	pods *pod.Manager
	ctrs *container.Manager
}

var _ nri.Source = nriSource{}

func (s nriSource) NRIPod(id string) (*nri.Pod, error) {
	// Plugins describe a pod in its RunPodSandbox hook, before it is
	// published.
	sb, err := s.pods.GetUnpublished(id)
	if err != nil {
		return nil, err
	}
	return nriPod(sb), nil
}

func (s nriSource) NRIPods() []*nri.Pod {
	sbs := s.pods.List(pod.Filter{})
	out := make([]*nri.Pod, 0, len(sbs))
	for _, sb := range sbs {
		out = append(out, nriPod(sb))
	}
	return out
}

func nriPod(sb *pod.Sandbox) *nri.Pod {
	p := &nri.Pod{
		Id: sb.ID, Name: sb.Metadata.Name, Uid: sb.Metadata.UID, Namespace: sb.Metadata.Namespace,
		Labels: sb.Labels, Annotations: sb.Annotations, RuntimeHandler: sb.RuntimeHandler,
		Pid: uint32(sb.HolderPID), Ips: sb.IPs,
		Linux: &api.LinuxPodSandbox{CgroupParent: sb.CgroupParent, CgroupsPath: sb.CgroupParent},
	}
	for _, ns := range []struct{ kind, path string }{
		{"network", sb.NetNS}, {"ipc", sb.IPCNS}, {"uts", sb.UTSNS}, {"pid", sb.PIDNS},
	} {
		if ns.path != "" {
			p.Linux.Namespaces = append(p.Linux.Namespaces, &api.LinuxNamespace{Type: ns.kind, Path: ns.path})
		}
	}
	if r := sb.Resources; r != nil {
		p.Linux.PodOverhead = nri.FromCRIResources(r.Overhead)
		p.Linux.PodResources = nri.FromCRIResources(r.Resources)
		p.Linux.Resources = p.Linux.PodResources
	}
	return p
}

// nriVerbose is the part of the verbose container status read here.
type nriVerbose struct {
	SandboxID   string      `json:"sandboxID"`
	Pid         uint32      `json:"pid"`
	RuntimeSpec *specs.Spec `json:"runtimeSpec"`
}

func (s nriSource) NRIContainer(id string) (*nri.Container, error) {
	st, extra, err := s.ctrs.Status(context.Background(), id, true)
	if err != nil {
		return nil, err
	}
	var v nriVerbose
	if doc := extra["info"]; doc != "" {
		if err := json.Unmarshal([]byte(doc), &v); err != nil {
			return nil, fmt.Errorf("container %s: verbose status: %w", st.GetId(), err)
		}
	}
	m := nri.ContainerMeta{
		ID: st.GetId(), PodID: v.SandboxID, Name: st.GetMetadata().GetName(), State: nriState(st.GetState()),
		Labels: st.GetLabels(), Annotations: st.GetAnnotations(), Pid: v.Pid,
		CreatedAt: st.GetCreatedAt(), StartedAt: st.GetStartedAt(), FinishedAt: st.GetFinishedAt(),
		ExitCode: st.GetExitCode(), Reason: st.GetReason(), Message: st.GetMessage(),
	}
	return nri.FromSpec(m, v.RuntimeSpec), nil
}

func (s nriSource) NRIContainers() []*nri.Container { return s.containers(nil) }

func (s nriSource) NRIPodContainers(podID string) []*nri.Container {
	return s.containers(&runtimeapi.ContainerFilter{PodSandboxId: podID})
}

func (s nriSource) containers(f *runtimeapi.ContainerFilter) []*nri.Container {
	list := s.ctrs.List(f)
	out := make([]*nri.Container, 0, len(list))
	for _, c := range list {
		// One removed since the list is skipped.
		if nc, err := s.NRIContainer(c.GetId()); err == nil {
			out = append(out, nc)
		}
	}
	return out
}

func nriState(s runtimeapi.ContainerState) api.ContainerState {
	switch s {
	case runtimeapi.ContainerState_CONTAINER_CREATED:
		return api.ContainerState_CONTAINER_CREATED
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		return api.ContainerState_CONTAINER_RUNNING
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		return api.ContainerState_CONTAINER_STOPPED
	}
	return api.ContainerState_CONTAINER_UNKNOWN
}

// startNRI starts hosting NRI plugins (nil when enable_nri is off):
// pre-installed ones are launched and synchronized with the pods and
// containers recovery left, and the socket for external ones opens. The
// CDI devices plugins name are resolved by cdi (the node's extensions).
func (d *daemon) startNRI(cfg *config.Config, cdi nri.CDIInjector) (*nri.Service, error) {
	svc, err := nri.New(nri.Options{Config: cfg.Berth.NRI, Name: "berth", Version: Version,
		Source: nriSource{pods: d.pods, ctrs: d.containers}, Updater: d.containers, CDI: cdi, Log: d.log.With("component", "nri"),
		RunDir: cfg.Berth.RunDir})
	if err != nil {
		return nil, err
	}
	if err := svc.Start(); err != nil {
		return nil, err
	}
	return svc, nil
}
