package tracing

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// With no span in the context (tracing off), a step costs no allocation
// and leaves the context as it was.
func TestStartWithoutSpanIsFree(t *testing.T) {
	ctx := context.Background()
	got, span := Start(ctx, "step")
	if got != ctx || span.IsRecording() {
		t.Fatalf("Start without a span: new context %v, recording %v", got != ctx, span.IsRecording())
	}
	allocs := testing.AllocsPerRun(100, func() {
		_, s := Start(ctx, "step")
		End(s, nil)
		Record(ctx, "step", time.Time{})
	})
	if allocs != 0 {
		t.Fatalf("Start/End/Record without a span: %v allocations, want 0", allocs)
	}
}

// Children come from the provider of the span in the context, and End and
// Record keep what the step reports.
func TestChildSpansOfTheRequestSpan(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	ctx, req := tp.Tracer("test").Start(context.Background(), "request")
	_, child := Start(ctx, "cni ADD")
	End(child, errors.New("plugin failed"))
	began := time.Now().Add(-time.Second)
	Record(ctx, "storage: writable layer mount", began)
	req.End()

	spans := exp.GetSpans()
	if len(spans) != 3 {
		t.Fatalf("%d spans, want 3", len(spans))
	}
	add, mount := spans[0], spans[1]
	for _, s := range []tracetest.SpanStub{add, mount} {
		if s.Parent.SpanID() != req.SpanContext().SpanID() || s.SpanContext.TraceID() != req.SpanContext().TraceID() {
			t.Errorf("span %q is not a child of the request span", s.Name)
		}
	}
	if add.Name != "cni ADD" || add.Status.Code != codes.Error || add.Status.Description != "plugin failed" {
		t.Errorf("failed step: %q status %+v", add.Name, add.Status)
	}
	if !mount.StartTime.Equal(began) || mount.EndTime.Before(began.Add(time.Second)) {
		t.Errorf("recorded step: %v..%v, want from %v to now", mount.StartTime, mount.EndTime, began)
	}
}
