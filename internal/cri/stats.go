package cri

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/stats"
)

func (s *runtimeService) stats() (*stats.Collector, error) {
	if s.deps.Stats == nil {
		return nil, status.Error(codes.Unimplemented, "stats are not available")
	}
	return s.deps.Stats, nil
}

// ContainerStats reports one container's CPU, memory and writable layer.
func (s *runtimeService) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	c, err := s.stats()
	if err != nil {
		return nil, err
	}
	if req.GetContainerId() == "" {
		return nil, invalid("container_id is required")
	}
	st, err := c.ContainerStats(ctx, req.GetContainerId())
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
	c, err := s.stats()
	if err != nil {
		return nil, err
	}
	st, err := c.ListContainerStats(ctx, f)
	return st, toStatus(err)
}

// PodSandboxStats reports one pod: its cgroup, network and containers.
func (s *runtimeService) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	c, err := s.stats()
	if err != nil {
		return nil, err
	}
	if req.GetPodSandboxId() == "" {
		return nil, invalid("pod_sandbox_id is required")
	}
	st, err := c.PodSandboxStats(ctx, req.GetPodSandboxId())
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
	c, err := s.stats()
	if err != nil {
		return nil, err
	}
	st, err := c.ListPodSandboxStats(ctx, f)
	return st, toStatus(err)
}

// ListMetricDescriptors names the metrics ListPodSandboxMetrics reports.
func (s *runtimeService) ListMetricDescriptors(_ context.Context, _ *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	c, err := s.stats()
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListMetricDescriptorsResponse{Descriptors: c.MetricDescriptors()}, nil
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
	c, err := s.stats()
	if err != nil {
		return nil, err
	}
	m, err := c.PodSandboxMetrics(ctx)
	return m, toStatus(err)
}
