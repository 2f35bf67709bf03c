package nri

import (
	"context"
	"fmt"

	"github.com/containerd/nri/pkg/api"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The events below are delivered once for each pod or container even
// when the kubelet repeats the request that causes them (a retried run,
// a second stop). Events a plugin cannot refuse only log its error;
// RunPodSandbox, CreateContainer, StartContainer, UpdatePodSandbox and
// UpdateContainer return it, failing the request.

// PodData is the pod as plugins see it, nil if unknown; callers take it
// before a removal to describe what went away.
func (s *Service) PodData(id string) *Pod {
	if !s.active() {
		return nil
	}
	p, err := s.src.NRIPod(id)
	if err != nil {
		return nil
	}
	return p
}

// ContainerData is the container as plugins see it, nil if unknown.
func (s *Service) ContainerData(id string) *Container {
	if !s.active() {
		return nil
	}
	c, err := s.src.NRIContainer(id)
	if err != nil {
		return nil
	}
	return c
}

// PodContainers are the pod's containers as plugins see them.
func (s *Service) PodContainers(podID string) []*Container {
	if !s.active() {
		return nil
	}
	return s.src.NRIPodContainers(podID)
}

// RunPodSandbox tells the plugins a pod runs. When one fails it, those
// that had seen the pod are told it stopped and went away, and the error
// is returned: the caller removes the pod and fails the request.
//
// A retry of the request that made the pod waits for the first delivery
// to end and reports its outcome: the pod must not be published while
// the hooks still run.
func (s *Service) RunPodSandbox(ctx context.Context, podID string) error {
	if !s.active() {
		return nil
	}
	s.mu.Lock()
	if s.podsRun[podID] {
		underway := s.podRuns[podID]
		s.mu.Unlock()
		return s.awaitPodRun(ctx, podID, underway)
	}
	s.podsRun[podID] = true
	done := make(chan struct{})
	s.podRuns[podID] = done
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.podRuns, podID)
		s.mu.Unlock()
		close(done)
	}()
	pod, err := s.src.NRIPod(podID)
	if err != nil {
		s.forget(podID, s.podsRun)
		return fmt.Errorf("NRI: %w", err)
	}
	if err := s.nri.RunPodSandbox(ctx, &api.RunPodSandboxRequest{Pod: pod}); err != nil {
		s.log.Warn("NRI: a plugin failed RunPodSandbox; the pod is removed", "pod", podID, "error", err)
		s.stopPod(ctx, pod)
		s.RemovePodSandbox(ctx, pod)
		return fmt.Errorf("NRI: %w", err)
	}
	return nil
}

// awaitPodRun waits for the RunPodSandbox delivery underway (nil: none)
// of a pod and reports whether the plugins accepted the pod.
func (s *Service) awaitPodRun(ctx context.Context, podID string, underway <-chan struct{}) error {
	if underway != nil {
		select {
		case <-underway:
		case <-ctx.Done():
			return fmt.Errorf("NRI: wait for the plugins' RunPodSandbox of pod %s: %w", podID, ctx.Err())
		}
	}
	if !s.marked(s.podsRun, podID) {
		return fmt.Errorf("NRI: a plugin failed RunPodSandbox of pod %s", podID)
	}
	return nil
}

// StopPodSandbox tells the plugins a pod stopped (once).
func (s *Service) StopPodSandbox(ctx context.Context, podID string) {
	if s == nil {
		return
	}
	if pod := s.PodData(podID); pod != nil {
		s.stopPod(ctx, pod)
	}
}

func (s *Service) stopPod(ctx context.Context, pod *Pod) {
	if !s.mark(s.podsStopped, pod.GetId()) {
		return
	}
	if err := s.nri.StopPodSandbox(ctx, &api.StopPodSandboxRequest{Pod: pod}); err != nil {
		s.log.Error("NRI: StopPodSandbox", "pod", pod.GetId(), "error", err)
	}
}

// RemovePodSandbox tells the plugins a pod went away; pod was taken
// before the removal. A pod never stopped is reported stopped first.
func (s *Service) RemovePodSandbox(ctx context.Context, pod *Pod) {
	if s == nil || pod == nil {
		return
	}
	s.stopPod(ctx, pod)
	if err := s.nri.RemovePodSandbox(ctx, &api.RemovePodSandboxRequest{Pod: pod}); err != nil {
		s.log.Error("NRI: RemovePodSandbox", "pod", pod.GetId(), "error", err)
	}
	s.forget(pod.GetId(), s.podsRun, s.podsStopped)
}

// UpdatePodSandbox asks the plugins about new pod resources; an error
// fails the update.
func (s *Service) UpdatePodSandbox(ctx context.Context, podID string, overhead, res *runtimeapi.LinuxContainerResources) error {
	if !s.active() {
		return nil
	}
	pod, err := s.src.NRIPod(podID)
	if err != nil {
		return nil // the pod manager reports the unknown pod
	}
	_, err = s.nri.UpdatePodSandbox(ctx, &api.UpdatePodSandboxRequest{
		Pod: pod, OverheadLinuxResources: FromCRIResources(overhead), LinuxResources: FromCRIResources(res),
	})
	if err != nil {
		return fmt.Errorf("NRI: %w", err)
	}
	return nil
}

// PostUpdatePodSandbox tells the plugins a pod's resources changed.
func (s *Service) PostUpdatePodSandbox(ctx context.Context, podID string) {
	if pod := s.PodData(podID); pod != nil {
		if err := s.nri.PostUpdatePodSandbox(ctx, &api.PostUpdatePodSandboxRequest{Pod: pod}); err != nil {
			s.log.Error("NRI: PostUpdatePodSandbox", "pod", podID, "error", err)
		}
	}
}

// PostCreateContainer tells the plugins a container was created (once).
func (s *Service) PostCreateContainer(ctx context.Context, id string) {
	if s == nil {
		return
	}
	c := s.ContainerData(id)
	if c == nil || !s.mark(s.ctrsCreated, id) {
		return
	}
	pod := s.PodData(c.GetPodSandboxId())
	if err := s.nri.PostCreateContainer(ctx, &api.PostCreateContainerRequest{Pod: pod, Container: c}); err != nil {
		s.log.Error("NRI: PostCreateContainer", "container", id, "error", err)
	}
}

// StartContainer tells the plugins a container is about to start; an
// error fails the start.
func (s *Service) StartContainer(ctx context.Context, id string) error {
	c := s.ContainerData(id)
	if c == nil {
		return nil // the container manager reports the unknown container
	}
	pod := s.PodData(c.GetPodSandboxId())
	if err := s.nri.StartContainer(ctx, &api.StartContainerRequest{Pod: pod, Container: c}); err != nil {
		return fmt.Errorf("NRI: %w", err)
	}
	return nil
}

// PostStartContainer tells the plugins a container started.
func (s *Service) PostStartContainer(ctx context.Context, id string) {
	c := s.ContainerData(id)
	if c == nil {
		return
	}
	pod := s.PodData(c.GetPodSandboxId())
	if err := s.nri.PostStartContainer(ctx, &api.PostStartContainerRequest{Pod: pod, Container: c}); err != nil {
		s.log.Error("NRI: PostStartContainer", "container", id, "error", err)
	}
}

// UpdateContainer asks the plugins about new container resources. It
// returns the resources to set (the request's as plugins adjusted them),
// applies the updates they ask for other containers and their evictions.
func (s *Service) UpdateContainer(ctx context.Context, id string, r *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error) {
	c := s.ContainerData(id)
	if c == nil {
		return r, nil
	}
	pod := s.PodData(c.GetPodSandboxId())
	rsp, err := s.nri.UpdateContainer(ctx, &api.UpdateContainerRequest{Pod: pod, Container: c, LinuxResources: FromCRIResources(r)})
	if err != nil {
		return nil, fmt.Errorf("NRI: %w", err)
	}
	out := r
	for _, u := range rsp.GetUpdate() {
		if u.GetContainerId() == id {
			out = mergeCRIResources(r, u.GetLinux().GetResources())
		}
	}
	s.applyUpdates(ctx, rsp.GetUpdate(), id)
	s.evict(ctx, rsp.GetEvict())
	return out, nil
}

// PostUpdateContainer tells the plugins a container's resources changed.
func (s *Service) PostUpdateContainer(ctx context.Context, id string) {
	c := s.ContainerData(id)
	if c == nil {
		return
	}
	pod := s.PodData(c.GetPodSandboxId())
	if err := s.nri.PostUpdateContainer(ctx, &api.PostUpdateContainerRequest{Pod: pod, Container: c}); err != nil {
		s.log.Error("NRI: PostUpdateContainer", "container", id, "error", err)
	}
}

// StopContainer tells the plugins a container stopped (once), and
// applies the updates of other containers they answer with.
func (s *Service) StopContainer(ctx context.Context, id string) {
	if c := s.ContainerData(id); c != nil {
		s.stopContainer(ctx, c)
	}
}

func (s *Service) stopContainer(ctx context.Context, c *Container) {
	if !s.mark(s.ctrsStopped, c.GetId()) {
		return
	}
	pod := s.PodData(c.GetPodSandboxId())
	rsp, err := s.nri.StopContainer(ctx, &api.StopContainerRequest{Pod: pod, Container: c})
	if err != nil {
		s.log.Error("NRI: StopContainer", "container", c.GetId(), "error", err)
		return
	}
	s.applyUpdates(ctx, rsp.GetUpdate(), c.GetId())
}

// RemoveContainer tells the plugins a container went away; c was taken
// before the removal. One never reported stopped is reported so first.
func (s *Service) RemoveContainer(ctx context.Context, c *Container) {
	if s == nil || c == nil {
		return
	}
	s.stopContainer(ctx, c)
	pod := s.PodData(c.GetPodSandboxId())
	if err := s.nri.RemoveContainer(ctx, &api.RemoveContainerRequest{Pod: pod, Container: c}); err != nil {
		s.log.Error("NRI: RemoveContainer", "container", c.GetId(), "error", err)
	}
	s.forget(c.GetId(), s.ctrsCreated, s.ctrsStopped)
}
