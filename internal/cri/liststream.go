package cri

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The list streams (KEP-5825) send the very slice their unary counterpart
// answers with, cut into responses bounded both in items and in encoded
// bytes, so that no response nears the gRPC message limit however many
// objects the node holds (the kubelet's default receive limit is 16 MiB;
// crictl's is 16 MiB too, grpc-go's own default 4 MiB).
const (
	streamChunkItems = 500
	streamChunkBytes = 1 << 20
)

// sendChunks sends items in order, each in exactly one response of at
// least one item; no items means no response, only the end of the stream.
// It stops at the first failed send or when the client has gone away.
func sendChunks[T proto.Message](ctx context.Context, items []T, send func([]T) error) error {
	return chunks(items, streamChunkItems, streamChunkBytes, func(part []T) error {
		if err := ctx.Err(); err != nil {
			return toStatus(err)
		}
		return send(part)
	})
}

// chunks calls emit with consecutive runs of items, each at most
// maxItems long and, unless it is a single item, at most maxBytes encoded.
func chunks[T proto.Message](items []T, maxItems, maxBytes int, emit func([]T) error) error {
	start, size := 0, 0
	for i, it := range items {
		n := proto.Size(it)
		if i > start && (i-start >= maxItems || size+n > maxBytes) {
			if err := emit(items[start:i]); err != nil {
				return err
			}
			start, size = i, 0
		}
		size += n
	}
	if start < len(items) {
		return emit(items[start:])
	}
	return nil
}

// StreamPodSandboxes is ListPodSandbox as a stream.
func (s *runtimeService) StreamPodSandboxes(req *runtimeapi.StreamPodSandboxesRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxesResponse]) error {
	items, err := s.listPodSandboxes(req.GetFilter())
	if err != nil {
		return err
	}
	return sendChunks(stream.Context(), items, func(part []*runtimeapi.PodSandbox) error {
		return stream.Send(&runtimeapi.StreamPodSandboxesResponse{PodSandboxes: part})
	})
}

// StreamContainers is ListContainers as a stream.
func (s *runtimeService) StreamContainers(req *runtimeapi.StreamContainersRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamContainersResponse]) error {
	items, err := s.listContainers(req.GetFilter())
	if err != nil {
		return err
	}
	return sendChunks(stream.Context(), items, func(part []*runtimeapi.Container) error {
		return stream.Send(&runtimeapi.StreamContainersResponse{Containers: part})
	})
}

// StreamContainerStats is ListContainerStats as a stream.
func (s *runtimeService) StreamContainerStats(req *runtimeapi.StreamContainerStatsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamContainerStatsResponse]) error {
	items, err := s.listContainerStats(stream.Context(), req.GetFilter())
	if err != nil {
		return err
	}
	return sendChunks(stream.Context(), items, func(part []*runtimeapi.ContainerStats) error {
		return stream.Send(&runtimeapi.StreamContainerStatsResponse{ContainerStats: part})
	})
}

// StreamPodSandboxStats is ListPodSandboxStats as a stream.
func (s *runtimeService) StreamPodSandboxStats(req *runtimeapi.StreamPodSandboxStatsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxStatsResponse]) error {
	items, err := s.listPodSandboxStats(stream.Context(), req.GetFilter())
	if err != nil {
		return err
	}
	return sendChunks(stream.Context(), items, func(part []*runtimeapi.PodSandboxStats) error {
		return stream.Send(&runtimeapi.StreamPodSandboxStatsResponse{PodSandboxStats: part})
	})
}

// StreamPodSandboxMetrics is ListPodSandboxMetrics as a stream.
func (s *runtimeService) StreamPodSandboxMetrics(_ *runtimeapi.StreamPodSandboxMetricsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxMetricsResponse]) error {
	items, err := s.podSandboxMetrics(stream.Context())
	if err != nil {
		return err
	}
	return sendChunks(stream.Context(), items, func(part []*runtimeapi.PodSandboxMetrics) error {
		return stream.Send(&runtimeapi.StreamPodSandboxMetricsResponse{PodSandboxMetrics: part})
	})
}

// StreamImages is ListImages as a stream.
func (s *imageService) StreamImages(req *runtimeapi.StreamImagesRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamImagesResponse]) error {
	items, err := s.listImages(stream.Context(), req.GetFilter())
	if err != nil {
		return err
	}
	return sendChunks(stream.Context(), items, func(part []*runtimeapi.Image) error {
		return stream.Send(&runtimeapi.StreamImagesResponse{Images: part})
	})
}
