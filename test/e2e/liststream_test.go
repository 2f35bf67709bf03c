package e2e

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// collectStream reads a list stream to its end, checking that no
// response is empty, and returns its items in order.
func collectStream[R any, T any](t *testing.T, what string, open func() (grpc.ServerStreamingClient[R], error), items func(*R) []T) []T {
	t.Helper()
	st, err := open()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	var out []T
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		part := items(r)
		if len(part) == 0 {
			t.Fatalf("%s: an empty response (each must hold at least one item)", what)
		}
		out = append(out, part...)
	}
}

// sameItems fails unless stream and unary hold equal messages in order.
func sameItems[T proto.Message](t *testing.T, what string, stream, unary []T, min int) {
	t.Helper()
	if len(unary) < min {
		t.Fatalf("%s: unary call has %d items, the test needs %d", what, len(unary), min)
	}
	if !slices.EqualFunc(stream, unary, func(a, b T) bool { return proto.Equal(a, b) }) {
		t.Errorf("%s: stream has %d items, unary %d, or they differ:\nstream %v\nunary  %v", what, len(stream), len(unary), stream, unary)
	}
}

// sameIDs fails unless the two id lists are equal (stats differ from one
// reading to the next; the objects reported must not).
func sameIDs(t *testing.T, what string, stream, unary []string, min int) {
	t.Helper()
	if len(unary) < min || !slices.Equal(stream, unary) {
		t.Errorf("%s: stream %v, unary %v (want at least %d)", what, stream, unary, min)
	}
}

// TestListStreamsMatchUnary: each KEP-5825 stream, through berthd's real
// socket, gives the items of its unary call under the same filter, and a
// filter matching nothing ends the stream with no response and no error.
func TestListStreamsMatchUnary(t *testing.T) {
	e := startCtrEnv(t)
	rt, im := e.d.Runtime, e.d.Images
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sleeper := e.config("sleeper", "sleep", "1000")
	sleeper.Labels = map[string]string{"role": "sleeper"}
	running := e.run(t, sleeper)
	e.mustCreate(t, e.config("created", "true"))
	t.Cleanup(func() { e.stop(t, running, 0) })
	otherCfg := podConfig("other")
	runPod(t, e.d, otherCfg)

	for _, f := range []*runtimeapi.PodSandboxFilter{nil, {LabelSelector: map[string]string{"app": "other"}}, {Id: e.pod[:12]},
		{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}} {
		u, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		s := collectStream(t, "StreamPodSandboxes", func() (grpc.ServerStreamingClient[runtimeapi.StreamPodSandboxesResponse], error) {
			return rt.StreamPodSandboxes(ctx, &runtimeapi.StreamPodSandboxesRequest{Filter: f})
		}, (*runtimeapi.StreamPodSandboxesResponse).GetPodSandboxes)
		sameItems(t, "pods "+f.String(), s, u.GetItems(), 1)
	}

	for _, f := range []*runtimeapi.ContainerFilter{nil, {PodSandboxId: e.pod}, {LabelSelector: map[string]string{"role": "sleeper"}},
		{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_CREATED}}} {
		u, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		s := collectStream(t, "StreamContainers", func() (grpc.ServerStreamingClient[runtimeapi.StreamContainersResponse], error) {
			return rt.StreamContainers(ctx, &runtimeapi.StreamContainersRequest{Filter: f})
		}, (*runtimeapi.StreamContainersResponse).GetContainers)
		sameItems(t, "containers "+f.String(), s, u.GetContainers(), 1)
	}

	for _, f := range []*runtimeapi.ImageFilter{nil, {Image: &runtimeapi.ImageSpec{Image: e.appRef}}} {
		u, err := im.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		s := collectStream(t, "StreamImages", func() (grpc.ServerStreamingClient[runtimeapi.StreamImagesResponse], error) {
			return im.StreamImages(ctx, &runtimeapi.StreamImagesRequest{Filter: f})
		}, (*runtimeapi.StreamImagesResponse).GetImages)
		sameItems(t, "images "+f.String(), s, u.GetImages(), 1)
	}

	ctrStats := func(f *runtimeapi.ContainerStatsFilter) (stream, unary []string) {
		u, err := rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range u.GetStats() {
			unary = append(unary, st.GetAttributes().GetId())
		}
		for _, st := range collectStream(t, "StreamContainerStats", func() (grpc.ServerStreamingClient[runtimeapi.StreamContainerStatsResponse], error) {
			return rt.StreamContainerStats(ctx, &runtimeapi.StreamContainerStatsRequest{Filter: f})
		}, (*runtimeapi.StreamContainerStatsResponse).GetContainerStats) {
			stream = append(stream, st.GetAttributes().GetId())
		}
		return stream, unary
	}
	s, u := ctrStats(nil)
	sameIDs(t, "container stats", s, u, 2)
	s, u = ctrStats(&runtimeapi.ContainerStatsFilter{Id: running})
	sameIDs(t, "container stats by id", s, u, 1)

	podStats := func(f *runtimeapi.PodSandboxStatsFilter) (stream, unary []string) {
		u, err := rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range u.GetStats() {
			unary = append(unary, st.GetAttributes().GetId())
		}
		for _, st := range collectStream(t, "StreamPodSandboxStats", func() (grpc.ServerStreamingClient[runtimeapi.StreamPodSandboxStatsResponse], error) {
			return rt.StreamPodSandboxStats(ctx, &runtimeapi.StreamPodSandboxStatsRequest{Filter: f})
		}, (*runtimeapi.StreamPodSandboxStatsResponse).GetPodSandboxStats) {
			stream = append(stream, st.GetAttributes().GetId())
		}
		return stream, unary
	}
	s, u = podStats(nil)
	sameIDs(t, "pod stats", s, u, 2)
	s, u = podStats(&runtimeapi.PodSandboxStatsFilter{LabelSelector: map[string]string{"app": "other"}})
	sameIDs(t, "pod stats by label", s, u, 1)

	um, err := rt.ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var unaryPods, streamPods []string
	for _, m := range um.GetPodMetrics() {
		unaryPods = append(unaryPods, m.GetPodSandboxId())
	}
	for _, m := range collectStream(t, "StreamPodSandboxMetrics", func() (grpc.ServerStreamingClient[runtimeapi.StreamPodSandboxMetricsResponse], error) {
		return rt.StreamPodSandboxMetrics(ctx, &runtimeapi.StreamPodSandboxMetricsRequest{})
	}, (*runtimeapi.StreamPodSandboxMetricsResponse).GetPodSandboxMetrics) {
		streamPods = append(streamPods, m.GetPodSandboxId())
	}
	sameIDs(t, "pod metrics", streamPods, unaryPods, 2)

	// Filters that match nothing: an empty stream, not an error.
	none := map[string]string{"no": "match"}
	empty := map[string]int{
		"StreamPodSandboxes": len(collectStream(t, "StreamPodSandboxes", func() (grpc.ServerStreamingClient[runtimeapi.StreamPodSandboxesResponse], error) {
			return rt.StreamPodSandboxes(ctx, &runtimeapi.StreamPodSandboxesRequest{Filter: &runtimeapi.PodSandboxFilter{Id: "nosuchpod"}})
		}, (*runtimeapi.StreamPodSandboxesResponse).GetPodSandboxes)),
		"StreamContainers": len(collectStream(t, "StreamContainers", func() (grpc.ServerStreamingClient[runtimeapi.StreamContainersResponse], error) {
			return rt.StreamContainers(ctx, &runtimeapi.StreamContainersRequest{Filter: &runtimeapi.ContainerFilter{LabelSelector: none}})
		}, (*runtimeapi.StreamContainersResponse).GetContainers)),
		"StreamImages": len(collectStream(t, "StreamImages", func() (grpc.ServerStreamingClient[runtimeapi.StreamImagesResponse], error) {
			return im.StreamImages(ctx, &runtimeapi.StreamImagesRequest{Filter: &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: "example.invalid/none:1"}}})
		}, (*runtimeapi.StreamImagesResponse).GetImages)),
		"StreamContainerStats": len(collectStream(t, "StreamContainerStats", func() (grpc.ServerStreamingClient[runtimeapi.StreamContainerStatsResponse], error) {
			return rt.StreamContainerStats(ctx, &runtimeapi.StreamContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{PodSandboxId: "nosuchpod"}})
		}, (*runtimeapi.StreamContainerStatsResponse).GetContainerStats)),
		"StreamPodSandboxStats": len(collectStream(t, "StreamPodSandboxStats", func() (grpc.ServerStreamingClient[runtimeapi.StreamPodSandboxStatsResponse], error) {
			return rt.StreamPodSandboxStats(ctx, &runtimeapi.StreamPodSandboxStatsRequest{Filter: &runtimeapi.PodSandboxStatsFilter{LabelSelector: none}})
		}, (*runtimeapi.StreamPodSandboxStatsResponse).GetPodSandboxStats)),
	}
	for rpc, n := range empty {
		if n != 0 {
			t.Errorf("%s with a filter matching nothing: %d items", rpc, n)
		}
	}
}
