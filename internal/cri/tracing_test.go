package cri

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
)

// startTracedServer serves the CRI on sock with tp (nil: tracing off).
func startTracedServer(tb testing.TB, sock string, tp trace.TracerProvider) {
	tb.Helper()
	cfg := config.Default()
	s := New(Deps{Config: func() *config.Config { return cfg }, Log: slog.New(slog.DiscardHandler), Version: "test", Tracer: tp})
	if err := s.Listen(sock); err != nil {
		tb.Fatal(err)
	}
	go s.Serve()
	tb.Cleanup(func() { s.Stop(time.Second) })
}

func dialTB(tb testing.TB, sock string) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// traceparent is a W3C trace context as the kubelet sends it.
const (
	callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan  = "00f067aa0ba902b7"
)

func withTraceparent(ctx context.Context, sampled bool) context.Context {
	flags := "00"
	if sampled {
		flags = "01"
	}
	return metadata.AppendToOutgoingContext(ctx, "traceparent", fmt.Sprintf("00-%s-%s-%s", callerTrace, callerSpan, flags))
}

func TestServerSpanIsAChildOfTheCallersTrace(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	sock := filepath.Join(t.TempDir(), "berth.sock")
	startTracedServer(t, sock, tp)
	rt := runtimeapi.NewRuntimeServiceClient(dial(t, sock))
	for _, ctx := range []context.Context{context.Background(), withTraceparent(context.Background(), false), withTraceparent(context.Background(), true)} {
		if _, err := rt.Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want the sampled call's only: %+v", len(spans), spans)
	}
	s := spans[0]
	if s.Name != "runtime.v1.RuntimeService/Version" || s.SpanKind != trace.SpanKindServer ||
		s.SpanContext.TraceID().String() != callerTrace || s.Parent.SpanID().String() != callerSpan || !s.Parent.IsRemote() {
		t.Fatalf("span %q kind %v trace %s parent %s, want the server span of Version under the caller's span",
			s.Name, s.SpanKind, s.SpanContext.TraceID(), s.Parent.SpanID())
	}
}

// BenchmarkVersion measures one CRI round trip on the unix socket with
// tracing off, on but the call unsampled, and on and sampled.
func BenchmarkVersion(b *testing.B) {
	for _, bc := range []struct {
		name    string
		tp      func() trace.TracerProvider
		sampled bool
	}{
		{"off", func() trace.TracerProvider { return nil }, false},
		{"on-unsampled", func() trace.TracerProvider {
			return sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		}, false},
		{"on-sampled", func() trace.TracerProvider {
			return sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		}, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			sock := filepath.Join(b.TempDir(), "berth.sock")
			startTracedServer(b, sock, bc.tp())
			rt := runtimeapi.NewRuntimeServiceClient(dialTB(b, sock))
			ctx := withTraceparent(context.Background(), bc.sampled)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := rt.Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
