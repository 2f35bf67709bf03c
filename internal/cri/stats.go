package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ContainerStats reports one container's CPU, memory and writable layer.
func (s *runtimeService) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	if req.GetContainerId() == "" {
		return nil, invalid("container_id is required")
	}
	st, err := s.deps.Stats.ContainerStats(ctx, req.GetContainerId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &runtimeapi.ContainerStatsResponse{Stats: st}, nil
}

// ListContainerStats reports the containers matching the filter.
func (s *runtimeService) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	st, err := s.listContainerStats(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListContainerStatsResponse{Stats: st}, nil
}

// listContainerStats builds the answer of ListContainerStats and
// StreamContainerStats.
func (s *runtimeService) listContainerStats(ctx context.Context, f *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	st, err := s.deps.Stats.ListContainerStats(ctx, f)
	return st, toStatus(err)
}

// PodSandboxStats reports one pod: its cgroup, network and containers.
func (s *runtimeService) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, invalid("pod_sandbox_id is required")
	}
	st, err := s.deps.Stats.PodSandboxStats(ctx, req.GetPodSandboxId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: st}, nil
}

// ListPodSandboxStats reports the pods matching the filter.
func (s *runtimeService) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	st, err := s.listPodSandboxStats(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: st}, nil
}

// listPodSandboxStats builds the answer of ListPodSandboxStats and
// StreamPodSandboxStats.
func (s *runtimeService) listPodSandboxStats(ctx context.Context, f *runtimeapi.PodSandboxStatsFilter) ([]*runtimeapi.PodSandboxStats, error) {
	st, err := s.deps.Stats.ListPodSandboxStats(ctx, f)
	return st, toStatus(err)
}

// ListMetricDescriptors names the metrics ListPodSandboxMetrics reports.
func (s *runtimeService) ListMetricDescriptors(_ context.Context, _ *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	return &runtimeapi.ListMetricDescriptorsResponse{Descriptors: s.deps.Stats.MetricDescriptors()}, nil
}

// ListPodSandboxMetrics reports cAdvisor-style metrics of every pod and
// container.
func (s *runtimeService) ListPodSandboxMetrics(ctx context.Context, _ *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	m, err := s.podSandboxMetrics(ctx)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxMetricsResponse{PodMetrics: m}, nil
}

// podSandboxMetrics builds the answer of ListPodSandboxMetrics and
// StreamPodSandboxMetrics.
func (s *runtimeService) podSandboxMetrics(ctx context.Context) ([]*runtimeapi.PodSandboxMetrics, error) {
	m, err := s.deps.Stats.PodSandboxMetrics(ctx)
	return m, toStatus(err)
}
