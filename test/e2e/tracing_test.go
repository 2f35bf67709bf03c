package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// otlpReceiver is an OTLP/gRPC trace collector served by the test: it
// keeps every span berthd exports.
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	addr  string
	mu    sync.Mutex
	spans []*tracepb.Span
}

func startOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &otlpReceiver{addr: ln.Addr().String()}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, r)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return r
}

func (r *otlpReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			r.spans = append(r.spans, ss.GetSpans()...)
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) received() []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*tracepb.Span(nil), r.spans...)
}

// TestTracingSpansFollowTheCallersTrace runs a pod's life from a client
// that sends a W3C trace context, as the kubelet does, to a berthd
// exporting to an in-test OTLP receiver. Each CRI request becomes a
// server span whose parent is the caller's span, with child spans for the
// slow steps; requests without a trace context (the set-up, sampled at
// the default rate of 0) export nothing.
func TestTracingSpansFollowTheCallersTrace(t *testing.T) {
	recv := startOTLPReceiver(t)
	e := startCtrEnvWith(t, testutil.DaemonOptions{BinDir: binDir,
		ExtraTOML: fmt.Sprintf("\n[berth.tracing]\nenable_tracing = true\ntracing_endpoint = %q\n", recv.addr)})

	traceID, parentID := make([]byte, 16), make([]byte, 8)
	rand.Read(traceID)
	rand.Read(parentID)
	traced := func(d time.Duration) context.Context {
		return metadata.AppendToOutgoingContext(ctxT(t, d), "traceparent",
			fmt.Sprintf("00-%x-%x-01", traceID, parentID))
	}
	if _, err := e.d.Images.PullImage(traced(time.Minute), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: e.appRef}}); err != nil {
		t.Fatalf("PullImage: %v", err)
	}
	cfg := podConfig("traced")
	cfg.LogDirectory = e.logDir
	pod, err := e.d.Runtime.RunPodSandbox(traced(30*time.Second), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	ctr, err := e.d.Runtime.CreateContainer(traced(time.Minute), &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod.GetPodSandboxId(), SandboxConfig: cfg, Config: e.config("sleeper", "sleep", "3600")})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := e.d.Runtime.StartContainer(traced(time.Minute), &runtimeapi.StartContainerRequest{ContainerId: ctr.GetContainerId()}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	if _, err := e.d.Runtime.StopPodSandbox(traced(time.Minute), &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.GetPodSandboxId()}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	// Untraced clean-up, then a graceful stop, which flushes the spans
	// berthd still batches.
	removeAllPods(e.d)
	e.d.Stop(t)

	spans := recv.received()
	byName := map[string]*tracepb.Span{}
	var names []string
	for _, s := range spans {
		names = append(names, s.GetName())
		if hex.EncodeToString(s.GetTraceId()) != hex.EncodeToString(traceID) {
			t.Errorf("span %q has trace %x, want only the caller's trace %x (untraced requests are not sampled)", s.GetName(), s.GetTraceId(), traceID)
		}
		byName[s.GetName()] = s
	}
	sort.Strings(names)
	t.Logf("received %d spans: %v", len(spans), names)

	// Each CRI request: a server span, child of the caller's span.
	server := map[string]*tracepb.Span{}
	for _, rpc := range []string{"ImageService/PullImage", "RuntimeService/RunPodSandbox", "RuntimeService/CreateContainer",
		"RuntimeService/StartContainer", "RuntimeService/StopPodSandbox"} {
		s := byName["runtime.v1."+rpc]
		if s == nil {
			t.Errorf("no server span for %s", rpc)
			continue
		}
		server[rpc] = s
		if s.GetKind() != tracepb.Span_SPAN_KIND_SERVER || hex.EncodeToString(s.GetParentSpanId()) != hex.EncodeToString(parentID) {
			t.Errorf("span of %s: kind %v parent %x, want a server span under the caller's span %x", rpc, s.GetKind(), s.GetParentSpanId(), parentID)
		}
	}
	// The slow steps: children of the request that ran them.
	for step, rpc := range map[string]string{
		"image pull":                    "ImageService/PullImage",
		"cni ADD":                       "RuntimeService/RunPodSandbox",
		"storage: writable layer mount": "RuntimeService/CreateContainer",
		"conmon: runc create":           "RuntimeService/CreateContainer",
		"runc start":                    "RuntimeService/StartContainer",
		"cni DEL":                       "RuntimeService/StopPodSandbox",
	} {
		s, parent := byName[step], server[rpc]
		if s == nil || parent == nil {
			t.Errorf("no span %q (or its request %s)", step, rpc)
			continue
		}
		if hex.EncodeToString(s.GetParentSpanId()) != hex.EncodeToString(parent.GetSpanId()) {
			t.Errorf("span %q: parent %x, want %s's span %x", step, s.GetParentSpanId(), rpc, parent.GetSpanId())
		}
		if s.GetEndTimeUnixNano() < s.GetStartTimeUnixNano() || s.GetStartTimeUnixNano() < parent.GetStartTimeUnixNano() {
			t.Errorf("span %q [%d, %d] is not within its request [%d, %d]", step, s.GetStartTimeUnixNano(), s.GetEndTimeUnixNano(),
				parent.GetStartTimeUnixNano(), parent.GetEndTimeUnixNano())
		}
	}
}

// TestTracingCollectorDownCostsOnlySpans points berthd at a collector
// that is not there: requests are served as usual, the failed export is
// in berthd's log, and a stop does not wait on the collector for long.
func TestTracingCollectorDownCostsOnlySpans(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close()
	d, _ := startNetDaemon(t, map[string]string{"50-tracing.toml": fmt.Sprintf(
		"[berth.tracing]\nenable_tracing = true\ntracing_endpoint = %q\ntracing_sampling_rate_per_million = 1000000\n", deadAddr)})
	pod := runPod(t, d, podConfig("untraceable"))
	stopPod(t, d, pod)
	removePod(t, d, pod)
	start := time.Now()
	d.Stop(t)
	if took := time.Since(start); took > testutil.StartTimeout {
		t.Errorf("stop took %v", took)
	}
	if log := d.Log(); !strings.Contains(log, "tracing: ") || !strings.Contains(log, deadAddr) {
		t.Errorf("berthd's log does not report the failed export to %s:\n%s", deadAddr, log)
	}
}
