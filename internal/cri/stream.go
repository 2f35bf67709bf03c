package cri

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Exec returns the streaming URL of an exec session in a running container.
func (s *runtimeService) Exec(_ context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if s.deps.Streams == nil {
		return nil, status.Error(codes.Unimplemented, "Exec: no streaming server")
	}
	if req.GetContainerId() == "" {
		return nil, invalid("Exec: container_id is required")
	}
	if len(req.GetCmd()) == 0 {
		return nil, invalid("Exec: cmd is required")
	}
	resp, err := s.deps.Streams.GetExec(req)
	return resp, toStatus(err)
}

// Attach returns the streaming URL of an attach session to a running
// container.
func (s *runtimeService) Attach(_ context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	if s.deps.Streams == nil {
		return nil, status.Error(codes.Unimplemented, "Attach: no streaming server")
	}
	if req.GetContainerId() == "" {
		return nil, invalid("Attach: container_id is required")
	}
	resp, err := s.deps.Streams.GetAttach(req)
	return resp, toStatus(err)
}

// PortForward returns the streaming URL of a port-forward session into a
// pod's network namespace.
func (s *runtimeService) PortForward(_ context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	if s.deps.Streams == nil {
		return nil, status.Error(codes.Unimplemented, "PortForward: no streaming server")
	}
	if req.GetPodSandboxId() == "" {
		return nil, invalid("PortForward: pod_sandbox_id is required")
	}
	resp, err := s.deps.Streams.GetPortForward(req)
	return resp, toStatus(err)
}
