package cri

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// checkpointRefusal is the status every checkpoint RPC answers with, after
// its request is validated: FailedPrecondition while the node lacks a
// working CRIU (installing or fixing it is the caller's remedy), and
// Unimplemented once CRIU works, since berth itself cannot checkpoint yet.
func (s *runtimeService) checkpointRefusal(rpc string) error {
	if s.deps.Checkpoint == nil {
		return status.Errorf(codes.Unimplemented, "%s: checkpoint/restore is not available", rpc)
	}
	sup := s.deps.Checkpoint.Support()
	if !sup.CRIU {
		return status.Errorf(codes.FailedPrecondition, "%s: %s", rpc, sup.Reason)
	}
	return status.Errorf(codes.Unimplemented, "%s: %s", rpc, sup.Reason)
}

// CheckpointContainer is refused: see checkpointRefusal.
func (s *runtimeService) CheckpointContainer(_ context.Context, req *runtimeapi.CheckpointContainerRequest) (*runtimeapi.CheckpointContainerResponse, error) {
	if req.GetContainerId() == "" {
		return nil, invalid("container_id is required")
	}
	return nil, s.checkpointRefusal("CheckpointContainer")
}

// CheckpointPod is refused: see checkpointRefusal.
func (s *runtimeService) CheckpointPod(_ context.Context, req *runtimeapi.CheckpointPodRequest) (*runtimeapi.CheckpointPodResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, invalid("pod_sandbox_id is required")
	}
	return nil, s.checkpointRefusal("CheckpointPod")
}

// RestorePod is refused: see checkpointRefusal.
func (s *runtimeService) RestorePod(_ context.Context, req *runtimeapi.RestorePodRequest) (*runtimeapi.RestorePodResponse, error) {
	if req.GetCheckpointPath() == "" {
		return nil, invalid("checkpoint_path is required")
	}
	return nil, s.checkpointRefusal("RestorePod")
}
