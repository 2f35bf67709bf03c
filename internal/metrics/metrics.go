// Package metrics holds berth's Prometheus metrics, on a registry of its
// own, and the HTTP endpoints that serve them and the node operator's
// view of the runtime.
//
// Metric names follow CRI-O's, with the prefix berth_ instead of crio_:
//
//	berth_operations_total{operation}                 counter: CRI calls
//	berth_operations_latency_seconds{operation}        gauge: latest call
//	berth_operations_latency_seconds_total{operation}  summary: all calls
//	berth_operations_errors_total{operation}           counter: failed calls
//	berth_image_pulls_bytes_total{mediatype,size}      counter
//	berth_image_pulls_skipped_bytes_total{size}        counter
//	berth_image_pulls_success_total                    counter
//	berth_image_pulls_failure_total{error}             counter
//	berth_image_pulls_layer_size                       histogram
//	berth_image_layer_reuse_total{name}                counter
//	berth_containers_oom_total                         counter
//	berth_containers_oom_count_total{name}             counter
//	berth_containers_events_dropped_total              counter
//	berth_processes_defunct                            gauge: zombies on the node
//	berth_containers{state}                            gauge: containers by CRI state
//
// plus the Go runtime (go_*) and process (process_*) collectors.
//
// # Endpoints
//
// With [berth.metrics] enable_metrics, GET /metrics answers in the
// Prometheus text format on metrics_socket when it is set, else on
// metrics_host:metrics_port (default 127.0.0.1:9090); it serves nothing
// else, so that a scraper address exposes no config.
//
// The info socket always runs, next to the CRI socket (InfoSocketPath:
// "berth.sock" → "berth-info.sock", mode 0660), and answers:
//
//	GET /info              JSON Info: version, storage driver and root, run
//	                       root, cgroup driver, default runtime handler,
//	                       CRI socket, state dir
//	GET /config            the effective config as TOML (config.WriteTOML)
//	GET /containers/{id}   JSON ContainerInfo (id or unique prefix): name,
//	                       pid, image, image_ref, created_time, labels,
//	                       annotations, log_path, root, sandbox,
//	                       ip_addresses; 404 for an unknown id
//
// Clients speak HTTP over the unix socket with any host name, e.g.
// curl --unix-socket /run/berth/berth-info.sock http://berth/info.
package metrics

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// Prefix starts every berth metric name.
const Prefix = "berth_"

// Metrics is berth's metric set. A nil *Metrics is valid and records
// nothing, so callers need no checks.
type Metrics struct {
	reg *prometheus.Registry

	opsTotal        *prometheus.CounterVec
	opsLatency      *prometheus.GaugeVec
	opsLatencyTotal *prometheus.SummaryVec
	opsErrors       *prometheus.CounterVec

	pullBytes        *prometheus.CounterVec
	pullSkippedBytes *prometheus.CounterVec
	pullSuccess      prometheus.Counter
	pullFailure      *prometheus.CounterVec
	pullLayerSize    prometheus.Histogram
	layerReuse       *prometheus.CounterVec

	oomTotal prometheus.Counter
	oomCount *prometheus.CounterVec
	// dropped counts events dropped as reported by EventDropped, plus
	// what the function set by CountEventsDropped reports.
	dropped   atomic.Uint64
	droppedFn atomic.Pointer[func() uint64]
}

// New builds the metrics on a fresh registry; it starts nothing.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	op := []string{"operation"}
	m.opsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: Prefix + "operations_total", Help: "Cumulative number of berth operations by operation type.",
	}, op)
	m.opsLatency = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: Prefix + "operations_latency_seconds", Help: "Latency in seconds of the latest CRI call, by operation type.",
	}, op)
	m.opsLatencyTotal = prometheus.NewSummaryVec(prometheus.SummaryOpts{
		Name: Prefix + "operations_latency_seconds_total", Help: "Latency in seconds of berth operations, by operation type.",
		Objectives: map[float64]float64{0.5: 0.05, 0.9: 0.01, 0.99: 0.001},
	}, op)
	m.opsErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: Prefix + "operations_errors_total", Help: "Cumulative number of berth operation errors by operation type.",
	}, op)
	m.pullBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: Prefix + "image_pulls_bytes_total", Help: "Bytes transferred by berth image pulls, by media type and size bucket.",
	}, []string{"mediatype", "size"})
	m.pullSkippedBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: Prefix + "image_pulls_skipped_bytes_total", Help: "Bytes skipped by berth image pulls (already present), by size bucket.",
	}, []string{"size"})
	m.pullSuccess = prometheus.NewCounter(prometheus.CounterOpts{
		Name: Prefix + "image_pulls_success_total", Help: "Cumulative number of successful image pulls.",
	})
	m.pullFailure = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: Prefix + "image_pulls_failure_total", Help: "Cumulative number of failed image pulls, by reason.",
	}, []string{"error"})
	m.pullLayerSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: Prefix + "image_pulls_layer_size", Help: "Bytes transferred by image pulls per layer.",
		Buckets: []float64{1e3, 1e6, 1e7, 5e7, 1e8, 2e8, 3e8, 4e8, 5e8, 1e9, 1e10},
	})
	m.layerReuse = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: Prefix + "image_layer_reuse_total", Help: "Reused (not pulled) local image layer count by name.",
	}, []string{"name"})
	m.oomTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: Prefix + "containers_oom_total", Help: "Total number of containers killed because they ran out of memory (OOM).",
	})
	m.oomCount = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: Prefix + "containers_oom_count_total", Help: "Containers killed because they ran out of memory (OOM), by container name.",
	}, []string{"name"})
	eventsDropped := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: Prefix + "containers_events_dropped_total", Help: "Container events dropped because a GetContainerEvents client was too slow.",
	}, func() float64 {
		n := m.dropped.Load()
		if f := m.droppedFn.Load(); f != nil {
			n += (*f)()
		}
		return float64(n)
	})
	defunct := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: Prefix + "processes_defunct", Help: "Total number of defunct (zombie) processes on the node.",
	}, func() float64 {
		n, _ := DefunctProcesses("/proc")
		return float64(n)
	})
	m.reg.MustRegister(
		m.opsTotal, m.opsLatency, m.opsLatencyTotal, m.opsErrors,
		m.pullBytes, m.pullSkippedBytes, m.pullSuccess, m.pullFailure, m.pullLayerSize, m.layerReuse,
		m.oomTotal, m.oomCount, eventsDropped, defunct,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Registry is the registry holding berth's metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// UnaryServerInterceptor counts and times every CRI call by its method
// name ("RunPodSandbox"); PullImage calls also count as image pull
// successes or failures, the failure reason being the gRPC code. Put it
// first in the chain so that it sees the error a panic became.
func (m *Metrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if m == nil {
			return handler(ctx, req)
		}
		op := filepath.Base(info.FullMethod)
		start := time.Now()
		resp, err := handler(ctx, req)
		m.ObserveOperation(op, time.Since(start), err)
		if op == "PullImage" {
			if err != nil {
				m.ImagePullFailed(status.Code(err).String())
			} else {
				m.ImagePullSucceeded()
			}
		}
		return resp, err
	}
}

// StreamServerInterceptor counts and times the CRI list streams
// ("StreamContainers") as operations, each when its stream ends. The
// long-lived GetContainerEvents is not an operation and is left out.
func (m *Metrics) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		op := filepath.Base(info.FullMethod)
		if m == nil || !strings.HasPrefix(op, "Stream") {
			return handler(srv, ss)
		}
		start := time.Now()
		err := handler(srv, ss)
		m.ObserveOperation(op, time.Since(start), err)
		return err
	}
}

// ObserveOperation records one operation that took d and ended with err.
func (m *Metrics) ObserveOperation(op string, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.opsTotal.WithLabelValues(op).Inc()
	m.opsLatency.WithLabelValues(op).Set(d.Seconds())
	m.opsLatencyTotal.WithLabelValues(op).Observe(d.Seconds())
	if err != nil {
		m.opsErrors.WithLabelValues(op).Inc()
	}
}

// ImagePullSucceeded counts a successful pull.
func (m *Metrics) ImagePullSucceeded() {
	if m != nil {
		m.pullSuccess.Inc()
	}
}

// ImagePullFailed counts a failed pull by reason (a short code such as
// "NotFound" or "Unauthenticated", never free text).
func (m *Metrics) ImagePullFailed(reason string) {
	if m != nil {
		m.pullFailure.WithLabelValues(reason).Inc()
	}
}

// ImagePullBlob records a pulled blob of mediaType: bytes transferred
// and its declared size (which picks the size bucket label).
func (m *Metrics) ImagePullBlob(mediaType string, transferred uint64, size int64) {
	if m == nil {
		return
	}
	m.pullBytes.WithLabelValues(mediaType, SizeBucket(size)).Add(float64(transferred))
	m.pullLayerSize.Observe(float64(transferred))
}

// ImageLayerReused records a layer that was already present, by digest,
// with its size.
func (m *Metrics) ImageLayerReused(digest string, size int64) {
	if m == nil {
		return
	}
	m.layerReuse.WithLabelValues(digest).Inc()
	if size > 0 {
		m.pullSkippedBytes.WithLabelValues(SizeBucket(size)).Add(float64(size))
	}
}

// ContainerOOM counts a container killed by the OOM killer.
func (m *Metrics) ContainerOOM(name string) {
	if m == nil {
		return
	}
	m.oomTotal.Inc()
	m.oomCount.WithLabelValues(name).Inc()
}

// ContainerRemoved forgets a removed container's per-name OOM count.
func (m *Metrics) ContainerRemoved(name string) {
	if m != nil {
		m.oomCount.DeleteLabelValues(name)
	}
}

// EventDropped counts a container event that no client received.
func (m *Metrics) EventDropped() {
	if m != nil {
		m.dropped.Add(1)
	}
}

// CountEventsDropped makes the events-dropped counter include total, a
// cumulative count kept elsewhere (the container event broadcaster's).
func (m *Metrics) CountEventsDropped(total func() uint64) {
	if m != nil {
		m.droppedFn.Store(&total)
	}
}

// SizeBucket is CRI-O's size label: "<1mb", "<10mb", "<100mb", "<1gb",
// "<10gb", ">=10gb", or "unknown" for a negative size.
func SizeBucket(size int64) string {
	if size < 0 {
		return "unknown"
	}
	for _, b := range []struct {
		limit int64
		name  string
	}{{1 << 20, "<1mb"}, {10 << 20, "<10mb"}, {100 << 20, "<100mb"}, {1 << 30, "<1gb"}, {10 << 30, "<10gb"}} {
		if size < b.limit {
			return b.name
		}
	}
	return ">=10gb"
}
