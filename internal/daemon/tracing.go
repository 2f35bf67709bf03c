package daemon

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/berth-cri/berth/internal/config"
)

// startTracing makes the tracer provider [berth.tracing] asks for, or nil
// when tracing is off, so that the CRI server installs no handler at all.
// The exporter connects lazily: an unreachable collector costs dropped
// spans and logged export errors, never a failed start.
func (d *daemon) startTracing(ctx context.Context, cfg config.Tracing) (*sdktrace.TracerProvider, error) {
	if !cfg.Enable {
		return nil, nil
	}
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(cfg.Endpoint), otlptracegrpc.WithInsecure())
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter for %s: %w", cfg.Endpoint, err)
	}
	// The SDK reports failed exports (at most one a batch, every few
	// seconds) through its process-wide error handler, stderr by default;
	// they go to berthd's log, as klog's and logrus's output does.
	log := d.log.With("component", "tracing")
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing: export spans", "error", err) }))
	res := resource.NewSchemaless(semconv.ServiceName("berth"), semconv.ServiceVersion(Version))
	// As in CRI-O and the kubelet: a request whose caller sampled its
	// trace is always traced; the rate applies to traces berth starts.
	sampler := sdktrace.ParentBased(sdktrace.TraceIDRatioBased(float64(cfg.SamplingRatePerMillion) / 1e6))
	d.log.Info("tracing: exporting spans over OTLP", "endpoint", cfg.Endpoint, "sampling_rate_per_million", cfg.SamplingRatePerMillion)
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res), sdktrace.WithSampler(sampler)), nil
}

// stopTracing flushes the spans still batched, once the server has
// stopped, and closes the exporter.
func (d *daemon) stopTracing(tp *sdktrace.TracerProvider) {
	if tp == nil {
		return
	}
	// Bounded: an unreachable collector must not hold up a stop for
	// long (the exporter would retry for a minute).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tp.Shutdown(ctx); err != nil {
		d.log.Warn("tracing: flush spans at stop", "error", err)
	}
}

// tracerOf is tp as the CRI server takes it: a nil interface when off.
func tracerOf(tp *sdktrace.TracerProvider) trace.TracerProvider {
	if tp == nil {
		return nil
	}
	return tp
}
