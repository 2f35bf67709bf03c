// Package cri is berth's gRPC front: thin handlers for the CRI
// RuntimeService and ImageService. Each handler validates its request,
// calls one service package and maps the error to a gRPC status. No
// runtime logic lives here.
package cri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/checkpoint"
	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/container"
	"github.com/berth-cri/berth/internal/image"
	"github.com/berth-cri/berth/internal/lifecycle"
	"github.com/berth-cri/berth/internal/metrics"
	"github.com/berth-cri/berth/internal/ociext"
	"github.com/berth-cri/berth/internal/pod"
	"github.com/berth-cri/berth/internal/runtime"
	"github.com/berth-cri/berth/internal/stats"
	"github.com/berth-cri/berth/internal/stream"
	"github.com/berth-cri/berth/internal/tracing"
)

// Deps are the services the handlers call. berthd wires every one; a unit
// test wires only those of the RPCs it calls (a call into a missing one
// is answered Internal by the recovering interceptor). Streams alone may
// be nil: its RPCs then answer Unimplemented.
type Deps struct {
	// Config returns the current config snapshot.
	Config  func() *config.Config
	Log     *slog.Logger
	Version string
	Images  *image.Service
	// Pods runs the pod sandbox RPCs.
	Pods *pod.Manager
	// Streams serves exec, attach and port-forward.
	Streams *stream.Server
	// NetworkStatus reports whether pod networking is ready; nil means
	// no network manager is wired in yet.
	NetworkStatus func() (ready bool, reason, message string)
	// Stats answers the stats RPCs; Metrics counts and times every call
	// (nil counts nothing).
	Stats   *stats.Collector
	Metrics *metrics.Metrics
	// Containers runs the container RPCs.
	Containers *container.Manager
	// Lifecycle runs what spans a pod and its containers (creating a
	// container in a pod, stopping and removing a pod) and every step NRI
	// plugins hear of: running a pod, starting, updating, stopping and
	// removing a container.
	Lifecycle *lifecycle.Service
	// NRIInfo reports the NRI plugins for the verbose Status; nil
	// reports nothing.
	NRIInfo func() any
	// Events carries the lifecycle events of GetContainerEvents.
	Events *runtime.Events
	// Checkpoint says whether CRIU can checkpoint on this node.
	Checkpoint *checkpoint.Prober
	// Features probes what a runtime handler's OCI runtime can do, for
	// Status; nil advertises nothing optional.
	Features *runtime.FeatureProbe
	// Extensions reports the known CDI devices, the loaded OCI hooks and
	// the default mounts in the verbose Status; nil reports none.
	Extensions func() ociext.Report
	// Tracer, when set, gives every request a server span, a child of the
	// caller's trace context; nil (tracing off) adds nothing to a call.
	Tracer trace.TracerProvider
}

// Server owns the gRPC server and the listening socket.
type Server struct {
	deps Deps
	grpc *grpc.Server
	ln   net.Listener
	// stopping is closed when Stop begins, so that long-lived streams
	// (GetContainerEvents) end instead of holding up a graceful stop.
	stopping chan struct{}
	stopOnce sync.Once
}

// runtimeService and imageService split the two CRI services so each can
// embed its own Unimplemented base.
type runtimeService struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	*Server
}

type imageService struct {
	runtimeapi.UnimplementedImageServiceServer
	*Server
}

// New builds the gRPC server; Serve starts answering.
func New(deps Deps) *Server {
	s := &Server{deps: deps, stopping: make(chan struct{})}
	cfg := deps.Config().Berth.API
	mem := newMemoryReleaser()
	go mem.run(s.stopping)
	opts := []grpc.ServerOption{
		grpc.StatsHandler(mem),
		grpc.MaxRecvMsgSize(cfg.GRPCMaxRecvSize),
		grpc.MaxSendMsgSize(cfg.GRPCMaxSendSize),
		grpc.ChainUnaryInterceptor(deps.Metrics.UnaryServerInterceptor(), s.logAndRecover),
		grpc.ChainStreamInterceptor(deps.Metrics.StreamServerInterceptor(), s.logAndRecoverStream),
	}
	if deps.Tracer != nil {
		opts = append(opts, grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(deps.Tracer),
			otelgrpc.WithPropagators(tracing.Propagator()), otelgrpc.WithMeterProvider(noopmetric.NewMeterProvider()))))
	}
	s.grpc = grpc.NewServer(opts...)
	runtimeapi.RegisterRuntimeServiceServer(s.grpc, &runtimeService{Server: s})
	runtimeapi.RegisterImageServiceServer(s.grpc, &imageService{Server: s})
	return s
}

// Listen opens the unix socket at path: its directory is created, a stale
// socket left by a dead daemon is replaced, and a live one is refused.
func (s *Server) Listen(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("create socket dir: %w", err)
	}
	if _, err := os.Lstat(path); err == nil {
		conn, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			conn.Close()
			return fmt.Errorf("socket %s is in use by a running daemon", path)
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("remove stale socket %s: %w", path, err)
		}
		s.deps.Log.Info("replaced stale socket", "path", path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return fmt.Errorf("chmod socket %s: %w", path, err)
	}
	s.ln = ln
	return nil
}

// Serve answers requests until Stop; it returns nil after a graceful stop.
func (s *Server) Serve() error {
	if err := s.grpc.Serve(s.ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve CRI: %w", err)
	}
	return nil
}

// Stop stops accepting, lets in-flight requests finish (up to timeout),
// then closes what is left.
func (s *Server) Stop(timeout time.Duration) {
	s.stopOnce.Do(func() { close(s.stopping) })
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		s.deps.Log.Warn("in-flight requests did not finish in time; closing them", "timeout", timeout)
		s.grpc.Stop()
	}
}

// logAndRecover logs every request at debug with the id it concerns and
// its duration, and turns a panic into an Internal error so one bad
// request cannot take the daemon down.
func (s *Server) logAndRecover(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			s.deps.Log.Error("panic in CRI handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
			err = status.Errorf(codes.Internal, "%s: internal error: %v", filepath.Base(info.FullMethod), r)
		}
		log := s.deps.Log
		if !log.Enabled(ctx, slog.LevelDebug) {
			return
		}
		attrs := []any{"method", filepath.Base(info.FullMethod), "duration", time.Since(start)}
		if id := requestID(req); id != "" {
			attrs = append(attrs, "id", id)
		}
		if err != nil {
			attrs = append(attrs, "code", status.Code(err).String(), "error", err)
		}
		log.Debug("CRI request", attrs...)
	}()
	return handler(ctx, req)
}

// logAndRecoverStream does for streaming RPCs what logAndRecover does for
// unary ones.
func (s *Server) logAndRecoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	start := time.Now()
	s.deps.Log.Debug("CRI stream started", "method", filepath.Base(info.FullMethod))
	defer func() {
		if r := recover(); r != nil {
			s.deps.Log.Error("panic in CRI stream handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
			err = status.Errorf(codes.Internal, "%s: internal error: %v", filepath.Base(info.FullMethod), r)
		}
		s.deps.Log.Debug("CRI stream ended", "method", filepath.Base(info.FullMethod), "duration", time.Since(start), "error", err)
	}()
	return handler(srv, ss)
}

// requestID picks the object a request is about, for the log line.
func requestID(req any) string {
	m, ok := req.(proto.Message)
	if !ok {
		return ""
	}
	fields := m.ProtoReflect().Descriptor().Fields()
	for _, name := range []string{"pod_sandbox_id", "container_id", "image"} {
		f := fields.ByName(protoreflect.Name(name))
		if f == nil {
			continue
		}
		v := m.ProtoReflect().Get(f)
		if f.Message() != nil {
			// ImageSpec: log its image reference.
			if img := f.Message().Fields().ByName("image"); img != nil && v.Message().IsValid() {
				return v.Message().Get(img).String()
			}
			continue
		}
		if sv := v.String(); sv != "" {
			return sv
		}
	}
	if cfg := fields.ByName("config"); cfg != nil && cfg.Message() != nil {
		if md := cfg.Message().Fields().ByName("metadata"); md != nil {
			v := m.ProtoReflect().Get(cfg).Message()
			if v.IsValid() && v.Has(md) {
				meta := v.Get(md).Message()
				if name := meta.Descriptor().Fields().ByName("name"); name != nil {
					return meta.Get(name).String()
				}
			}
		}
	}
	return ""
}
