// Package lifecycle runs the operations that span a pod and its
// containers: creating a container in a pod, and stopping or removing a
// pod with its containers. It sits above the pod and container managers,
// which never call each other, and keeps one rule (see pod.Manager.Admit
// and Seal): a container is made only under an admission of its ready,
// unsealed pod, and a stop or removal seals the pod and waits for the
// admissions under way before it looks for the pod's containers. So no
// container can be registered in a pod after its stop found none.
package lifecycle

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/pod"
)

// Pods is what lifecycle needs from the pod manager.
type Pods interface {
	Admit(idOrPrefix string) (sb *pod.Sandbox, done func(), err error)
	Seal(ctx context.Context, idOrPrefix string) (string, error)
	Stop(ctx context.Context, id string) error
	Remove(ctx context.Context, id string) error
}

// Containers is what lifecycle needs from the container manager.
type Containers interface {
	// Create's finished is closed when no creation it started is under
	// way, which may be after it returned.
	Create(ctx context.Context, sb *pod.Sandbox, cfg *runtimeapi.ContainerConfig) (id string, finished <-chan struct{}, err error)
	StopPodContainers(ctx context.Context, podID string) error
	RemovePodContainers(ctx context.Context, podID string) error
}

// Service runs the pod-spanning operations.
type Service struct {
	pods       Pods
	containers Containers
}

// New returns the service over the two managers.
func New(pods Pods, containers Containers) *Service {
	return &Service{pods: pods, containers: containers}
}

// CreateContainer makes a container in the pod with this id, which must
// be ready and not being stopped. The admission lasts until the creation
// has ended, even when the client gave up first: its container must not
// appear in a pod whose stop has already looked.
func (s *Service) CreateContainer(ctx context.Context, podID string, cfg *runtimeapi.ContainerConfig) (string, error) {
	sb, done, err := s.pods.Admit(podID)
	if err != nil {
		return "", err
	}
	id, finished, err := s.containers.Create(ctx, sb, cfg)
	go func() {
		<-finished
		done()
	}()
	return id, err
}

// StopPod stops the pod's containers (each with its grace period), then
// releases the pod. Stopping an unknown pod succeeds.
func (s *Service) StopPod(ctx context.Context, podID string) error {
	id, err := s.pods.Seal(ctx, podID)
	if err != nil || id == "" {
		return err
	}
	if err := s.containers.StopPodContainers(ctx, id); err != nil {
		return fmt.Errorf("stop containers of pod %s: %w", id, err)
	}
	return s.pods.Stop(ctx, id)
}

// RemovePod removes the pod's containers, stopping what still runs, then
// the pod. Removing an unknown pod succeeds.
func (s *Service) RemovePod(ctx context.Context, podID string) error {
	id, err := s.pods.Seal(ctx, podID)
	if err != nil || id == "" {
		return err
	}
	if err := s.containers.RemovePodContainers(ctx, id); err != nil {
		return fmt.Errorf("remove containers of pod %s: %w", id, err)
	}
	return s.pods.Remove(ctx, id)
}
