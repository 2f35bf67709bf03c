package lifecycle

import (
	"context"
	"errors"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The operations below are the pod manager's or the container manager's
// alone; lifecycle runs them to tell the NRI plugins at the right point.

// RunPod runs a pod, tells the plugins, then publishes the pod: until
// their RunPodSandbox hooks returned it is neither listed nor found nor
// given containers. When a plugin fails it, the pod is stopped and
// removed (nothing is left behind, and nothing saw it) and the request
// fails; the kubelet's retry makes a new pod.
func (s *Service) RunPod(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (string, error) {
	unblock := s.plugins.Block()
	defer unblock()
	id, err := s.pods.Run(ctx, cfg, handler)
	if err != nil {
		return "", err
	}
	if err := s.plugins.RunPodSandbox(ctx, id); err != nil {
		// The undo must run even when the client has gone.
		bg := context.WithoutCancel(ctx)
		var undo []error
		if _, serr := s.pods.Seal(bg, id); serr != nil {
			undo = append(undo, serr)
		} else if serr := s.pods.Stop(bg, id); serr != nil {
			undo = append(undo, serr)
		} else if rerr := s.pods.Remove(bg, id); rerr != nil {
			undo = append(undo, rerr)
		}
		if len(undo) > 0 {
			err = fmt.Errorf("%w (undo of pod %s: %w)", err, id, errors.Join(undo...))
		}
		return "", err
	}
	if err := s.pods.Publish(id); err != nil {
		return "", err
	}
	return id, nil
}

// UpdatePodResources asks the plugins, records the pod's new resources,
// then tells the plugins.
func (s *Service) UpdatePodResources(ctx context.Context, podID string, overhead, res *runtimeapi.LinuxContainerResources) error {
	if sb, err := s.pods.Get(podID); err == nil {
		podID = sb.ID
	}
	if err := s.plugins.UpdatePodSandbox(ctx, podID, overhead, res); err != nil {
		return err
	}
	if err := s.pods.UpdateResources(ctx, podID, overhead, res); err != nil {
		return err
	}
	s.plugins.PostUpdatePodSandbox(ctx, podID)
	return nil
}

// StartContainer tells the plugins, starts the container, and tells
// them it started. A plugin's error fails the start.
func (s *Service) StartContainer(ctx context.Context, id string) error {
	if err := s.plugins.StartContainer(ctx, id); err != nil {
		return err
	}
	if err := s.containers.Start(ctx, id); err != nil {
		return err
	}
	s.plugins.PostStartContainer(ctx, id)
	return nil
}

// UpdateContainerResources sets the resources the plugins agree to
// (adjusted by them), then tells them.
func (s *Service) UpdateContainerResources(ctx context.Context, id string, r *runtimeapi.LinuxContainerResources) error {
	adjusted, err := s.plugins.UpdateContainer(ctx, id, r)
	if err != nil {
		return err
	}
	if err := s.containers.UpdateResources(ctx, id, adjusted); err != nil {
		return err
	}
	s.plugins.PostUpdateContainer(ctx, id)
	return nil
}

// StopContainer stops a container, then tells the plugins (once).
func (s *Service) StopContainer(ctx context.Context, id string, timeout int64) error {
	if err := s.containers.Stop(ctx, id, timeout); err != nil {
		return err
	}
	s.plugins.StopContainer(ctx, id)
	return nil
}

// RemoveContainer removes a container, then tells the plugins.
func (s *Service) RemoveContainer(ctx context.Context, id string) error {
	unblock := s.plugins.Block()
	defer unblock()
	before := s.plugins.ContainerData(id)
	if err := s.containers.Remove(ctx, id); err != nil {
		return err
	}
	s.plugins.RemoveContainer(ctx, before)
	return nil
}
