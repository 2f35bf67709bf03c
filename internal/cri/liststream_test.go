package cri

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/metrics"
	"github.com/berth-cri/berth/internal/stats"
)

func TestChunksBoundItemsAndBytesAndKeepEveryItemOnce(t *testing.T) {
	var items []*runtimeapi.PodSandbox
	for i := range 1203 {
		sb := &runtimeapi.PodSandbox{Id: fmt.Sprintf("pod-%04d", i)}
		if i%100 == 7 {
			// A few big items: the byte bound cuts around them.
			sb.Annotations = map[string]string{"big": strings.Repeat("x", 3000)}
		}
		items = append(items, sb)
	}
	const maxItems, maxBytes = 200, 4000
	var seen []string
	err := chunks(items, maxItems, maxBytes, func(part []*runtimeapi.PodSandbox) error {
		if len(part) == 0 || len(part) > maxItems {
			t.Fatalf("chunk of %d items", len(part))
		}
		size := 0
		for _, sb := range part {
			size += proto.Size(sb)
			seen = append(seen, sb.Id)
		}
		if len(part) > 1 && size > maxBytes {
			t.Fatalf("chunk of %d items has %d bytes, over %d", len(part), size, maxBytes)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != len(items) {
		t.Fatalf("saw %d items, want %d", len(seen), len(items))
	}
	for i, id := range seen {
		if id != items[i].Id {
			t.Fatalf("item %d is %s, want %s", i, id, items[i].Id)
		}
	}

	calls := 0
	if err := chunks([]*runtimeapi.PodSandbox{}, maxItems, maxBytes, func([]*runtimeapi.PodSandbox) error { calls++; return nil }); err != nil || calls != 0 {
		t.Fatalf("no items: %d sends, %v", calls, err)
	}
	stop := errors.New("client gone")
	calls = 0
	if err := chunks(items, maxItems, maxBytes, func([]*runtimeapi.PodSandbox) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("a failed send must stop the stream: %d sends, %v", calls, err)
	}
}

// manyPods is a pod source of n pods without cgroups or containers.
type manyPods int

func (n manyPods) StatsPods() []stats.PodTarget { return fatPods{n: int(n)}.StatsPods() }

func (n manyPods) StatsPod(id string) (stats.PodTarget, error) {
	return fatPods{n: int(n)}.StatsPod(id)
}

// fatPods is n pods each carrying a label of labelBytes.
type fatPods struct{ n, labelBytes int }

func (p fatPods) StatsPods() []stats.PodTarget {
	out := make([]stats.PodTarget, 0, p.n)
	for i := range p.n {
		pt := stats.PodTarget{ID: fmt.Sprintf("pod-%06d", i), Name: fmt.Sprintf("p%d", i), Namespace: "default", UID: fmt.Sprint(i)}
		if p.labelBytes > 0 {
			pt.Labels = map[string]string{"fill": strings.Repeat("x", p.labelBytes)}
		}
		out = append(out, pt)
	}
	return out
}

func (p fatPods) StatsPod(id string) (stats.PodTarget, error) {
	return stats.PodTarget{}, fmt.Errorf("pod sandbox %q: %w", id, errdefs.ErrNotFound)
}

// streamServer serves a stats collector over pods on a real socket.
func streamServer(t *testing.T, pods stats.PodSource) (runtimeapi.RuntimeServiceClient, *metrics.Metrics) {
	t.Helper()
	cfg := config.Default()
	cfgf := func() *config.Config { return cfg }
	col := stats.New(stats.Options{Config: cfgf, Log: slog.New(slog.DiscardHandler), Pods: pods, Containers: noObjects{}})
	t.Cleanup(func() { col.Close() })
	m := metrics.New()
	sock := filepath.Join(t.TempDir(), "berth.sock")
	s := New(Deps{Config: cfgf, Log: slog.New(slog.DiscardHandler), Version: "test", Stats: col, Metrics: m})
	if err := s.Listen(sock); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Stop(time.Second) })
	// A fixed 64 KiB window: the server cannot send ahead of a client
	// that stops reading, so its handler is mid-stream when the client
	// cancels.
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn), m
}

func TestStreamMatchesUnaryAndEndsEmptyOnNoMatch(t *testing.T) {
	rt, m := streamServer(t, manyPods(1200))
	ctx := context.Background()
	unary, err := rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := rt.StreamPodSandboxStats(ctx, &runtimeapi.StreamPodSandboxStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	responses := 0
	for {
		r, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		responses++
		if n := len(r.GetPodSandboxStats()); n == 0 || n > streamChunkItems {
			t.Fatalf("response of %d items", n)
		}
		for _, s := range r.GetPodSandboxStats() {
			got = append(got, s.GetAttributes().GetId())
		}
	}
	if responses < 3 || len(got) != len(unary.GetStats()) {
		t.Fatalf("%d items in %d responses, unary has %d", len(got), responses, len(unary.GetStats()))
	}
	for i, s := range unary.GetStats() {
		if got[i] != s.GetAttributes().GetId() {
			t.Fatalf("item %d: stream %s, unary %s", i, got[i], s.GetAttributes().GetId())
		}
	}

	st, err = rt.StreamPodSandboxStats(ctx, &runtimeapi.StreamPodSandboxStatsRequest{Filter: &runtimeapi.PodSandboxStatsFilter{Id: "no-such-pod"}})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := st.Recv(); err != io.EOF {
		t.Fatalf("a filter matching nothing: want EOF at once, got %v, %v", r, err)
	}
	if n := opCount(t, m, "berth_operations_total", "StreamPodSandboxStats"); n != 2 {
		t.Errorf("operations counted for StreamPodSandboxStats: %v, want 2", n)
	}
}

// TestStreamGoesPastTheMessageLimit: 5,000 pods whose unary answer is over
// the client's 4 MiB receive limit (ResourceExhausted) all arrive through
// the stream.
func TestStreamGoesPastTheMessageLimit(t *testing.T) {
	const pods = 5000
	rt, _ := streamServer(t, fatPods{n: pods, labelBytes: 1000})
	ctx := context.Background()
	if _, err := rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("unary list of %d fat pods: want ResourceExhausted, got %v", pods, err)
	}
	st, err := rt.StreamPodSandboxStats(ctx, &runtimeapi.StreamPodSandboxStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for {
		r, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range r.GetPodSandboxStats() {
			if seen[s.GetAttributes().GetId()] {
				t.Fatalf("%s sent twice", s.GetAttributes().GetId())
			}
			seen[s.GetAttributes().GetId()] = true
		}
	}
	if len(seen) != pods {
		t.Fatalf("stream gave %d pods, want %d", len(seen), pods)
	}
}

func TestStreamCancelledAfterFirstChunkLeaksNoGoroutine(t *testing.T) {
	rt, m := streamServer(t, manyPods(20000))
	// Warm up: connection, collector and server goroutines all exist now.
	if _, err := rt.ListPodSandboxStats(context.Background(), &runtimeapi.ListPodSandboxStatsRequest{Filter: &runtimeapi.PodSandboxStatsFilter{Id: "none"}}); err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(context.Background())
	st, err := rt.StreamPodSandboxStats(ctx, &runtimeapi.StreamPodSandboxStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := st.Recv(); err != nil || len(r.GetPodSandboxStats()) == 0 {
		t.Fatalf("first chunk: %v, %v", r, err)
	}
	cancel()
	// Responses already received stay readable; then the cancellation.
	for {
		_, err := st.Recv()
		if err == nil {
			continue
		}
		if status.Code(err) != codes.Canceled {
			t.Fatalf("after cancel: %v", err)
		}
		break
	}

	// The handler ends with the client's cancellation: the interceptor
	// counts it as a failed operation when it returns.
	deadline := time.Now().Add(20 * time.Second)
	for opErrors(t, m, "StreamPodSandboxStats") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the stream handler did not end after the client cancelled")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before the stream:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// opErrors reads berth_operations_errors_total for op.
func opErrors(t *testing.T, m *metrics.Metrics, op string) float64 {
	t.Helper()
	return opCount(t, m, "berth_operations_errors_total", op)
}

// opCount reads the counter name for op.
func opCount(t *testing.T, m *metrics.Metrics, name, op string) float64 {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, mm := range f.GetMetric() {
			for _, l := range mm.GetLabel() {
				if l.GetName() == "operation" && l.GetValue() == op {
					return mm.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
