package main

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The list commands ask for their objects through the CRI list streams
// (KEP-5825), which no message size limit caps, and fall back to the
// unary list when the runtime does not serve them (Unimplemented, on the
// stream's first read). Each method has the shape of a unary client call,
// so it goes through call() like one.

// listViaStream reads a stream to its end, or answers with the unary
// call when the runtime lacks the stream.
func listViaStream[T any, SR any, LR any](ctx context.Context, c *client,
	open func(context.Context) (grpc.ServerStreamingClient[SR], error), items func(*SR) []T,
	unary func(context.Context) (LR, error), wrap func([]T) LR) (LR, error) {
	if !c.noListStreams.Load() {
		out, err := readStream(ctx, open, items)
		if status.Code(err) != codes.Unimplemented {
			return wrap(out), err
		}
		c.noListStreams.Store(true)
	}
	return unary(ctx)
}

func readStream[T any, SR any](ctx context.Context, open func(context.Context) (grpc.ServerStreamingClient[SR], error), items func(*SR) []T) ([]T, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := open(ctx)
	if err != nil {
		return nil, err
	}
	var out []T
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, items(r)...)
	}
}

func (c *client) listPodSandboxRPC(ctx context.Context, req *runtimeapi.ListPodSandboxRequest, _ ...grpc.CallOption) (*runtimeapi.ListPodSandboxResponse, error) {
	return listViaStream(ctx, c,
		func(ctx context.Context) (grpc.ServerStreamingClient[runtimeapi.StreamPodSandboxesResponse], error) {
			return c.runtime.StreamPodSandboxes(ctx, &runtimeapi.StreamPodSandboxesRequest{Filter: req.GetFilter()})
		}, (*runtimeapi.StreamPodSandboxesResponse).GetPodSandboxes,
		func(ctx context.Context) (*runtimeapi.ListPodSandboxResponse, error) {
			return c.runtime.ListPodSandbox(ctx, req)
		},
		func(items []*runtimeapi.PodSandbox) *runtimeapi.ListPodSandboxResponse {
			return &runtimeapi.ListPodSandboxResponse{Items: items}
		})
}

func (c *client) listContainersRPC(ctx context.Context, req *runtimeapi.ListContainersRequest, _ ...grpc.CallOption) (*runtimeapi.ListContainersResponse, error) {
	return listViaStream(ctx, c,
		func(ctx context.Context) (grpc.ServerStreamingClient[runtimeapi.StreamContainersResponse], error) {
			return c.runtime.StreamContainers(ctx, &runtimeapi.StreamContainersRequest{Filter: req.GetFilter()})
		}, (*runtimeapi.StreamContainersResponse).GetContainers,
		func(ctx context.Context) (*runtimeapi.ListContainersResponse, error) {
			return c.runtime.ListContainers(ctx, req)
		},
		func(items []*runtimeapi.Container) *runtimeapi.ListContainersResponse {
			return &runtimeapi.ListContainersResponse{Containers: items}
		})
}

func (c *client) listImagesRPC(ctx context.Context, req *runtimeapi.ListImagesRequest, _ ...grpc.CallOption) (*runtimeapi.ListImagesResponse, error) {
	return listViaStream(ctx, c,
		func(ctx context.Context) (grpc.ServerStreamingClient[runtimeapi.StreamImagesResponse], error) {
			return c.images.StreamImages(ctx, &runtimeapi.StreamImagesRequest{Filter: req.GetFilter()})
		}, (*runtimeapi.StreamImagesResponse).GetImages,
		func(ctx context.Context) (*runtimeapi.ListImagesResponse, error) {
			return c.images.ListImages(ctx, req)
		},
		func(items []*runtimeapi.Image) *runtimeapi.ListImagesResponse {
			return &runtimeapi.ListImagesResponse{Images: items}
		})
}

func (c *client) listContainerStatsRPC(ctx context.Context, req *runtimeapi.ListContainerStatsRequest, _ ...grpc.CallOption) (*runtimeapi.ListContainerStatsResponse, error) {
	return listViaStream(ctx, c,
		func(ctx context.Context) (grpc.ServerStreamingClient[runtimeapi.StreamContainerStatsResponse], error) {
			return c.runtime.StreamContainerStats(ctx, &runtimeapi.StreamContainerStatsRequest{Filter: req.GetFilter()})
		}, (*runtimeapi.StreamContainerStatsResponse).GetContainerStats,
		func(ctx context.Context) (*runtimeapi.ListContainerStatsResponse, error) {
			return c.runtime.ListContainerStats(ctx, req)
		},
		func(items []*runtimeapi.ContainerStats) *runtimeapi.ListContainerStatsResponse {
			return &runtimeapi.ListContainerStatsResponse{Stats: items}
		})
}

func (c *client) listPodSandboxStatsRPC(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest, _ ...grpc.CallOption) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	return listViaStream(ctx, c,
		func(ctx context.Context) (grpc.ServerStreamingClient[runtimeapi.StreamPodSandboxStatsResponse], error) {
			return c.runtime.StreamPodSandboxStats(ctx, &runtimeapi.StreamPodSandboxStatsRequest{Filter: req.GetFilter()})
		}, (*runtimeapi.StreamPodSandboxStatsResponse).GetPodSandboxStats,
		func(ctx context.Context) (*runtimeapi.ListPodSandboxStatsResponse, error) {
			return c.runtime.ListPodSandboxStats(ctx, req)
		},
		func(items []*runtimeapi.PodSandboxStats) *runtimeapi.ListPodSandboxStatsResponse {
			return &runtimeapi.ListPodSandboxStatsResponse{Stats: items}
		})
}
