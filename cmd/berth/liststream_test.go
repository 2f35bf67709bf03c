package main

import (
	"context"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestListFallsBackToUnaryOnce: against a runtime without the list
// streams (the fake answers them Unimplemented), the lists answer from
// the unary calls, and the client stops trying the streams.
func TestListFallsBackToUnaryOnce(t *testing.T) {
	f, ep := startFake(t)
	ctx := context.Background()
	if _, err := f.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"},
	}}); err != nil {
		t.Fatal(err)
	}
	conn, err := dial(ep, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &client{runtime: runtimeapi.NewRuntimeServiceClient(conn), images: runtimeapi.NewImageServiceClient(conn)}
	for range 2 {
		resp, err := c.listPodSandboxRPC(ctx, &runtimeapi.ListPodSandboxRequest{})
		if err != nil || len(resp.GetItems()) != 1 {
			t.Fatalf("list pods: %v, %v", resp, err)
		}
		if !c.noListStreams.Load() {
			t.Fatal("an Unimplemented stream should switch the client to the unary lists")
		}
	}
	if resp, err := c.listImagesRPC(ctx, &runtimeapi.ListImagesRequest{}); err != nil || resp == nil {
		t.Fatalf("list images: %v, %v", resp, err)
	}
}
