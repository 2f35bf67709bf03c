package daemon

import (
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/pod"
	"github.com/berth-cri/berth/internal/runtime"
	"github.com/berth-cri/berth/internal/stats"
	"github.com/berth-cri/berth/internal/stream"
)

// The adapters below let one service read another's objects; they live
// here, in the one package that knows both.

// streamPods answers the streaming server's pod questions from the pod
// manager.
type streamPods struct{ pods *pod.Manager }

var _ stream.PodLookup = streamPods{}

// NetNSPath is the pod's pinned network namespace, "" on the host network.
func (p streamPods) NetNSPath(podID string) (string, error) {
	sb, err := p.pods.Get(podID)
	if err != nil {
		return "", err
	}
	if sb.Namespaces.Network == pod.ModeNode {
		return "", nil
	}
	if sb.State != pod.StateReady || sb.NetNS == "" {
		return "", fmt.Errorf("pod %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	return sb.NetNS, nil
}

// endStreamsOnStop ends a container's exec and attach sessions when the
// container stops, so that execs in a shared PID namespace do not outlive
// it. The returned func stops listening.
func endStreamsOnStop(events *runtime.Events, streams *stream.Server) (stop func()) {
	sub := events.Subscribe()
	done := make(chan struct{})
	go func() {
		for {
			select {
			case ev := <-sub.C:
				if ev.GetContainerEventType() == runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT {
					streams.ContainerStopped(ev.GetContainerId())
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		sub.Close()
		close(done)
	}
}

// statsPods answers the stats collector's pod questions from the pod
// manager.
type statsPods struct{ m *pod.Manager }

var _ stats.PodSource = statsPods{}

func (p statsPods) StatsPods() []stats.PodTarget {
	sbs := p.m.List(pod.Filter{})
	// A cgroup parent is the pod's own only if no other pod uses it
	// (the default parent is shared by every pod that names none).
	users := make(map[string]int, len(sbs))
	for _, sb := range sbs {
		users[sb.CgroupParent]++
	}
	out := make([]stats.PodTarget, 0, len(sbs))
	for _, sb := range sbs {
		out = append(out, podTarget(sb, users[sb.CgroupParent] == 1))
	}
	return out
}

func (p statsPods) StatsPod(id string) (stats.PodTarget, error) {
	sb, err := p.m.Get(id)
	if err != nil {
		return stats.PodTarget{}, err
	}
	if sb == nil {
		return stats.PodTarget{}, fmt.Errorf("pod sandbox %q: %w", id, errdefs.ErrNotFound)
	}
	own := true
	for _, o := range p.m.List(pod.Filter{}) {
		if o.ID != sb.ID && o.CgroupParent == sb.CgroupParent {
			own = false
			break
		}
	}
	return podTarget(sb, own), nil
}

func podTarget(sb *pod.Sandbox, ownCgroup bool) stats.PodTarget {
	t := stats.PodTarget{
		ID:          sb.ID,
		Name:        sb.Metadata.Name,
		Namespace:   sb.Metadata.Namespace,
		UID:         sb.Metadata.UID,
		Attempt:     sb.Metadata.Attempt,
		Labels:      sb.Labels,
		Annotations: sb.Annotations,
		NetNS:       sb.NetNS,
	}
	if ownCgroup {
		t.CgroupDir = sb.CgroupParent
	}
	return t
}
