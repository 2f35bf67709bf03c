// Package tracing gives the service packages one way to open a child span
// of the CRI request they serve.
//
// Tracing is off unless [berth.tracing] enable_tracing is set: then no
// tracer provider exists, the gRPC server has no stats handler, and Start
// returns the no-op span the request context already carries, so the off
// path costs a context lookup. When on, the daemon makes a TracerProvider
// exporting over OTLP/gRPC and hands it to the CRI server by construction
// (berth never installs a global provider); the services find it again
// through the request's span, so nothing below the CRI layer is told
// about tracing.
package tracing

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// instrumentation names the tracer of berth's own spans.
const instrumentation = "github.com/berth-cri/berth"

// Propagator reads the caller's trace context from the gRPC metadata: the
// W3C traceparent the kubelet sends, and baggage.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// Start opens a child span of the span in ctx, from that span's own
// provider; without a recording span in ctx (tracing off, or an
// unsampled request) it returns ctx and a non-recording span at no cost.
func Start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, parent
	}
	return parent.TracerProvider().Tracer(instrumentation).Start(ctx, name, trace.WithAttributes(attrs...))
}

// End records err on span, if any, and ends it.
func End(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Record adds a finished child span of the span in ctx that began at
// start and ends now, for a step timed by its caller anyway.
func Record(ctx context.Context, name string, start time.Time, attrs ...attribute.KeyValue) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return
	}
	_, span := parent.TracerProvider().Tracer(instrumentation).Start(ctx, name, trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	span.End()
}
