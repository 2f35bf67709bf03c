package daemon

import (
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/pod"
	"github.com/berth-cri/berth/internal/runtime"
	"github.com/berth-cri/berth/internal/stream"
)

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
