package cri

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CreateContainer creates a container in a pod; a retry of a request the
// kubelet gave up on gets the container the first one made.
func (s *runtimeService) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, invalid("pod_sandbox_id is required")
	}
	id, err := s.deps.Lifecycle.CreateContainer(ctx, req.GetPodSandboxId(), req.GetConfig())
	if err != nil {
		return nil, toStatus(err)
	}
	return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
}

// StartContainer starts a created container.
func (s *runtimeService) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	if err := s.deps.Lifecycle.StartContainer(ctx, req.GetContainerId()); err != nil {
		return nil, toStatus(err)
	}
	return &runtimeapi.StartContainerResponse{}, nil
}

// StopContainer stops a container within timeout seconds; stopping a
// stopped or unknown container succeeds.
func (s *runtimeService) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	if req.GetContainerId() == "" {
		return nil, invalid("container_id is required")
	}
	if err := s.deps.Lifecycle.StopContainer(ctx, req.GetContainerId(), req.GetTimeout()); err != nil {
		return nil, toStatus(err)
	}
	return &runtimeapi.StopContainerResponse{}, nil
}

// RemoveContainer removes a container, stopping it first; removing an
// unknown container succeeds.
func (s *runtimeService) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	if req.GetContainerId() == "" {
		return nil, invalid("container_id is required")
	}
	if err := s.deps.Lifecycle.RemoveContainer(ctx, req.GetContainerId()); err != nil {
		return nil, toStatus(err)
	}
	return &runtimeapi.RemoveContainerResponse{}, nil
}

// ListContainers lists containers matching the filter.
func (s *runtimeService) ListContainers(_ context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	items, err := s.listContainers(req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListContainersResponse{Containers: items}, nil
}

// listContainers builds the answer of ListContainers and StreamContainers.
func (s *runtimeService) listContainers(f *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	return s.deps.Containers.List(f), nil
}

// ContainerStatus reports one container; verbose adds an info document.
func (s *runtimeService) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	st, info, err := s.deps.Containers.Status(ctx, req.GetContainerId(), req.GetVerbose())
	if err != nil {
		return nil, toStatus(err)
	}
	return &runtimeapi.ContainerStatusResponse{Status: st, Info: info}, nil
}

// UpdateContainerResources changes a container's cgroup limits.
func (s *runtimeService) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	if err := s.deps.Lifecycle.UpdateContainerResources(ctx, req.GetContainerId(), req.GetLinux()); err != nil {
		return nil, toStatus(err)
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}

// ReopenContainerLog makes conmon reopen the log file after a rotation.
func (s *runtimeService) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	if err := s.deps.Containers.ReopenLog(ctx, req.GetContainerId()); err != nil {
		return nil, toStatus(err)
	}
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}

// ExecSync runs a command in a container and returns its output; a
// timeout is a non-zero exit code, not an error.
func (s *runtimeService) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	res, err := s.deps.Containers.ExecSync(ctx, req.GetContainerId(), req.GetCmd(), req.GetTimeout())
	if err != nil {
		return nil, toStatus(err)
	}
	return &runtimeapi.ExecSyncResponse{Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: res.ExitCode}, nil
}

// GetContainerEvents streams lifecycle events until the client leaves.
func (s *runtimeService) GetContainerEvents(_ *runtimeapi.GetEventsRequest, stream runtimeapi.RuntimeService_GetContainerEventsServer) error {
	sub := s.deps.Events.Subscribe()
	defer sub.Close()
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case <-s.stopping:
			return status.Error(codes.Unavailable, "berthd is shutting down")
		case ev := <-sub.C:
			// Each manager filled in what it owns; add the other's part.
			resp := proto.Clone(ev.ContainerEventResponse).(*runtimeapi.ContainerEventResponse)
			if resp.PodSandboxStatus == nil {
				if sb, err := s.deps.Pods.Get(ev.PodID); err == nil {
					resp.PodSandboxStatus = sb.CRIStatus()
				}
			}
			if resp.ContainerId == ev.PodID {
				resp.ContainersStatuses = s.deps.Containers.PodStatuses(ev.PodID)
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
	}
}
