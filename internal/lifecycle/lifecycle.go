// Package lifecycle runs the operations that span a pod and its
// containers: creating a container in a pod, and stopping or removing a
// pod with its containers. It sits above the pod and container managers,
// which never call each other, and keeps one rule (see pod.Manager.Admit
// and Seal): a container is made only under an admission of its ready,
// unsealed pod, and a stop or removal seals the pod and waits for the
// admissions under way before it looks for the pod's containers. So no
// container can be registered in a pod after its stop found none.
//
// It also tells NRI plugins (internal/nri) about each step, at the point
// where it happens: after a pod runs, on a container's finished spec,
// around a start, an update, a stop and a removal.
package lifecycle

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/container"
	"github.com/berth-cri/berth/internal/nri"
	"github.com/berth-cri/berth/internal/pod"
)

// Pods is what lifecycle needs from the pod manager.
type Pods interface {
	Run(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (string, error)
	Publish(id string) error
	Get(idOrPrefix string) (*pod.Sandbox, error)
	UpdateResources(ctx context.Context, idOrPrefix string, overhead, res *runtimeapi.LinuxContainerResources) error
	Admit(idOrPrefix string) (sb *pod.Sandbox, done func(), err error)
	Seal(ctx context.Context, idOrPrefix string) (string, error)
	Stop(ctx context.Context, id string) error
	Remove(ctx context.Context, id string) error
}

// Containers is what lifecycle needs from the container manager.
type Containers interface {
	// CreateAdjusted's finished is closed when no creation it started is
	// under way, which may be after it returned.
	CreateAdjusted(ctx context.Context, sb *pod.Sandbox, cfg *runtimeapi.ContainerConfig, adj container.SpecAdjuster) (id string, finished <-chan struct{}, err error)
	Start(ctx context.Context, id string) error
	Stop(ctx context.Context, id string, timeout int64) error
	Remove(ctx context.Context, id string) error
	UpdateResources(ctx context.Context, id string, r *runtimeapi.LinuxContainerResources) error
	StopPodContainers(ctx context.Context, podID string) error
	RemovePodContainers(ctx context.Context, podID string) error
}

// Service runs the pod-spanning operations.
type Service struct {
	pods       Pods
	containers Containers
	// plugins are the NRI plugins; nil (NRI off) tells nobody.
	plugins *nri.Service
}

// New returns the service over the two managers and the NRI plugins
// (nil for none).
func New(pods Pods, containers Containers, plugins *nri.Service) *Service {
	return &Service{pods: pods, containers: containers, plugins: plugins}
}

// CreateContainer makes a container in the pod with this id, which must
// be ready and not being stopped. The admission lasts until the creation
// has ended, even when the client gave up first: its container must not
// appear in a pod whose stop has already looked.
//
// NRI plugins adjust the spec (CreateContainer) before the runtime sees
// it; a plugin's error fails the creation, which is undone. Once the
// creation is over they hear PostCreateContainer, or, for a container
// they adjusted that was not made, StopContainer and RemoveContainer.
func (s *Service) CreateContainer(ctx context.Context, podID string, cfg *runtimeapi.ContainerConfig) (string, error) {
	unblock := s.plugins.Block()
	sb, done, err := s.pods.Admit(podID)
	if err != nil {
		unblock()
		return "", err
	}
	creation := s.plugins.NewCreation(sb.ID, cfg)
	id, finished, err := s.containers.CreateAdjusted(ctx, sb, cfg, creation)
	end := func() {
		creation.Finish(context.WithoutCancel(ctx), id)
		unblock()
		done()
	}
	select {
	case <-finished:
		end()
	default:
		go func() {
			<-finished
			end()
		}()
	}
	return id, err
}

// StopPod stops the pod's containers (each with its grace period), then
// releases the pod. Stopping an unknown pod succeeds.
func (s *Service) StopPod(ctx context.Context, podID string) error {
	unblock := s.plugins.Block()
	defer unblock()
	id, err := s.pods.Seal(ctx, podID)
	if err != nil || id == "" {
		return err
	}
	err = s.containers.StopPodContainers(ctx, id)
	s.tellStopped(ctx, id)
	if err != nil {
		return fmt.Errorf("stop containers of pod %s: %w", id, err)
	}
	if err := s.pods.Stop(ctx, id); err != nil {
		return err
	}
	s.plugins.StopPodSandbox(ctx, id)
	return nil
}

// tellStopped tells the plugins which of the pod's containers stopped.
func (s *Service) tellStopped(ctx context.Context, podID string) {
	for _, c := range s.plugins.PodContainers(podID) {
		if c.GetState() == nri.ContainerStopped {
			s.plugins.StopContainer(ctx, c.GetId())
		}
	}
}

// RemovePod removes the pod's containers, stopping what still runs, then
// the pod. Removing an unknown pod succeeds.
func (s *Service) RemovePod(ctx context.Context, podID string) error {
	unblock := s.plugins.Block()
	defer unblock()
	id, err := s.pods.Seal(ctx, podID)
	if err != nil || id == "" {
		return err
	}
	ctrs := s.plugins.PodContainers(id)
	podData := s.plugins.PodData(id)
	err = s.containers.RemovePodContainers(ctx, id)
	for _, c := range ctrs {
		if s.plugins.ContainerData(c.GetId()) == nil {
			s.plugins.RemoveContainer(ctx, c)
		}
	}
	if err != nil {
		return fmt.Errorf("remove containers of pod %s: %w", id, err)
	}
	if err := s.pods.Remove(ctx, id); err != nil {
		return err
	}
	s.plugins.RemovePodSandbox(ctx, podData)
	return nil
}
