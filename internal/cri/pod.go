package cri

import (
	"context"
	"encoding/json"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/pod"
)

// RunPodSandbox creates and starts a pod; a retry of a request for the
// same pod metadata returns the same id.
func (s *runtimeService) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	id, err := s.deps.Lifecycle.RunPod(ctx, req.GetConfig(), req.GetRuntimeHandler())
	if err != nil {
		return nil, toStatus(err)
	}
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

// StopPodSandbox stops a pod's containers and releases its network and
// namespaces; stopping an unknown or stopped pod succeeds.
func (s *runtimeService) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, invalid("pod_sandbox_id is required")
	}
	if err := s.deps.Lifecycle.StopPod(ctx, req.GetPodSandboxId()); err != nil {
		return nil, toStatus(err)
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

// RemovePodSandbox removes a pod and everything it owns; removing an
// unknown pod succeeds.
func (s *runtimeService) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, invalid("pod_sandbox_id is required")
	}
	if err := s.deps.Lifecycle.RemovePod(ctx, req.GetPodSandboxId()); err != nil {
		return nil, toStatus(err)
	}
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

// PodSandboxStatus reports a pod; verbose adds berth's view of it as
// JSON under "info".
func (s *runtimeService) PodSandboxStatus(_ context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, invalid("pod_sandbox_id is required")
	}
	sb, err := s.deps.Pods.Get(req.GetPodSandboxId())
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &runtimeapi.PodSandboxStatusResponse{Status: sb.CRIStatus()}
	if req.GetVerbose() {
		info, err := json.Marshal(sb)
		if err != nil {
			return nil, toStatus(err)
		}
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

// ListPodSandbox lists pods, filtered by id (or id prefix), state and
// labels.
func (s *runtimeService) ListPodSandbox(_ context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	items, err := s.listPodSandboxes(req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxResponse{Items: items}, nil
}

// listPodSandboxes builds the answer of ListPodSandbox and
// StreamPodSandboxes.
func (s *runtimeService) listPodSandboxes(rf *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error) {
	var f pod.Filter
	if rf != nil {
		f.ID = rf.GetId()
		f.Labels = rf.GetLabelSelector()
		if st := rf.GetState(); st != nil {
			f.State = pod.StateNotReady
			if st.GetState() == runtimeapi.PodSandboxState_SANDBOX_READY {
				f.State = pod.StateReady
			}
		}
	}
	list := s.deps.Pods.List(f)
	items := make([]*runtimeapi.PodSandbox, 0, len(list))
	for _, sb := range list {
		items = append(items, sb.CRISandbox())
	}
	return items, nil
}

// UpdateRuntimeConfig takes the node's pod CIDR for IPAM.
func (s *runtimeService) UpdateRuntimeConfig(_ context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	if nc := req.GetRuntimeConfig().GetNetworkConfig(); nc != nil {
		if err := s.deps.Pods.UpdatePodCIDR(nc.GetPodCidr()); err != nil {
			return nil, toStatus(err)
		}
	}
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}

// UpdatePodSandboxResources records a pod's overhead and resources (and
// sets the limits of a pod cgroup berth made for it); the kubelet calls
// it around a pod-level resize, best effort.
func (s *runtimeService) UpdatePodSandboxResources(ctx context.Context, req *runtimeapi.UpdatePodSandboxResourcesRequest) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, invalid("pod_sandbox_id is required")
	}
	if err := s.deps.Lifecycle.UpdatePodResources(ctx, req.GetPodSandboxId(), req.GetOverhead(), req.GetResources()); err != nil {
		return nil, toStatus(err)
	}
	return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
}
