package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/ociext"
)

// Info is the answer of GET /info.
type Info struct {
	Version        string `json:"version"`
	StorageDriver  string `json:"storage_driver"`
	StorageRoot    string `json:"storage_root"`
	StorageRunRoot string `json:"storage_run_root"`
	CgroupDriver   string `json:"cgroup_driver"`
	DefaultRuntime string `json:"default_runtime"`
	CRISocket      string `json:"cri_socket"`
	StateDir       string `json:"state_dir"`
	// The node's spec extensions: known CDI devices, loaded OCI hooks,
	// default mounts (absent when the daemon has none wired in).
	CDI           *ociext.CDIReport    `json:"cdi,omitempty"`
	Hooks         *ociext.HooksReport  `json:"hooks,omitempty"`
	DefaultMounts *ociext.MountsReport `json:"default_mounts,omitempty"`
	// NRI is the NRI plugins' state, when the daemon reports it.
	NRI any `json:"nri,omitempty"`
}

// ContainerInfo is the answer of GET /containers/{id}, with CRI-O's field
// names.
type ContainerInfo struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Pid         int               `json:"pid"`
	Image       string            `json:"image"`
	ImageRef    string            `json:"image_ref"`
	CreatedTime int64             `json:"created_time"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	LogPath     string            `json:"log_path"`
	// Root is the container's root filesystem (its mount point).
	Root    string   `json:"root"`
	Sandbox string   `json:"sandbox"`
	IPs     []string `json:"ip_addresses"`
}

// ContainerInfoSource answers /containers/{id}; the container manager
// implements it (or the daemon adapts it). An unknown id is an error
// wrapping errdefs.ErrNotFound.
type ContainerInfoSource interface {
	ContainerInfo(idOrPrefix string) (*ContainerInfo, error)
}

// ServeOptions configure Serve.
type ServeOptions struct {
	Config  func() *config.Config
	Log     *slog.Logger
	Version string
	// StorageDriver names the storage driver in use; nil, or an empty
	// answer, reports the configured one.
	StorageDriver func() string
	// Containers answers /containers/{id}; nil answers 503.
	Containers ContainerInfoSource
	// Extensions reports the CDI devices, hooks and default mounts for
	// /info; nil leaves them out.
	Extensions func() ociext.Report
	// NRI reports the NRI plugins in /info; nil leaves them out.
	NRI func() any
}

// Server serves the info socket and, when enabled, the metrics endpoint.
type Server struct {
	opts      ServeOptions
	m         *Metrics
	servers   []*http.Server
	sockets   []string
	metricsLn net.Listener
	wg        sync.WaitGroup
}

// InfoSocketPath is the info socket next to the CRI socket:
// /run/berth/berth.sock → /run/berth/berth-info.sock.
func InfoSocketPath(criSocket string) string {
	dir, base := filepath.Split(criSocket)
	return filepath.Join(dir, strings.TrimSuffix(base, ".sock")+"-info.sock")
}

// Serve starts answering on the info socket and, with enable_metrics,
// on the metrics address. It only opens sockets: nothing is measured
// until a request asks.
func (m *Metrics) Serve(opts ServeOptions) (*Server, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	s := &Server{opts: opts, m: m}
	cfg := opts.Config().Berth
	info, err := listenUnix(InfoSocketPath(cfg.API.Listen))
	if err != nil {
		return nil, err
	}
	s.start(info, s.handler(false))
	s.sockets = append(s.sockets, InfoSocketPath(cfg.API.Listen))
	if mc := cfg.Metrics; mc.Enable {
		var ln net.Listener
		if mc.Socket != "" {
			ln, err = listenUnix(mc.Socket)
			s.sockets = append(s.sockets, mc.Socket)
		} else {
			ln, err = net.Listen("tcp", net.JoinHostPort(mc.Host, strconv.Itoa(mc.Port)))
		}
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("metrics endpoint: %w", err)
		}
		s.metricsLn = ln
		s.start(ln, s.handler(true))
		opts.Log.Info("serving metrics", "address", ln.Addr().String())
	}
	return s, nil
}

// MetricsAddr is the metrics endpoint's address, nil when disabled.
func (s *Server) MetricsAddr() net.Addr {
	if s.metricsLn == nil {
		return nil
	}
	return s.metricsLn.Addr()
}

// Close stops serving, letting requests in flight finish for a moment,
// and removes the sockets.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var errs []error
	for _, srv := range s.servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	s.wg.Wait()
	for _, p := range s.sockets {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Server) start(ln net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	s.servers = append(s.servers, srv)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.opts.Log.Error("metrics/info server stopped", "address", ln.Addr().String(), "error", err)
		}
	}()
}

// listenUnix opens a unix socket, replacing a stale one and refusing one
// a live process answers on, with mode 0660.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create socket dir: %w", err)
	}
	if _, err := os.Lstat(path); err == nil {
		if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
			conn.Close()
			return nil, fmt.Errorf("socket %s is in use by a running process", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod socket %s: %w", path, err)
	}
	return ln, nil
}

// handler routes the endpoints of one listener: the metrics endpoint
// serves /metrics only, so that binding it to a network address (for a
// scraper) exposes no config or container details; the info socket
// (root's only, mode 0660) serves the rest, Go's profiles under
// /debug/pprof/ among them, as containerd's debug socket does: profiling
// a node's runtime must not need a rebuild or a restart.
func (s *Server) handler(metrics bool) http.Handler {
	mux := http.NewServeMux()
	if metrics {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{}))
		return mux
	}
	mux.HandleFunc("GET /info", s.serveInfo)
	mux.HandleFunc("GET /config", s.serveConfig)
	mux.HandleFunc("GET /containers/{id}", s.serveContainer)
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

func (s *Server) serveInfo(w http.ResponseWriter, _ *http.Request) {
	cfg := s.opts.Config()
	b := cfg.Berth
	driver := ""
	if s.opts.StorageDriver != nil {
		driver = s.opts.StorageDriver()
	}
	if driver == "" {
		driver = b.StorageDriver
	}
	info := Info{
		Version:        s.opts.Version,
		StorageDriver:  driver,
		StorageRoot:    b.Root,
		StorageRunRoot: b.RunRoot,
		CgroupDriver:   b.Runtime.CgroupManager,
		DefaultRuntime: b.Runtime.DefaultRuntime,
		CRISocket:      b.API.Listen,
		StateDir:       b.StateDir,
	}
	if s.opts.NRI != nil {
		info.NRI = s.opts.NRI()
	}
	if s.opts.Extensions != nil {
		ext := s.opts.Extensions()
		info.CDI, info.Hooks, info.DefaultMounts = &ext.CDI, &ext.Hooks, &ext.DefaultMounts
	}
	writeJSON(w, s.opts.Log, info)
}

func (s *Server) serveConfig(w http.ResponseWriter, _ *http.Request) {
	out, err := s.opts.Config().WriteTOML()
	if err != nil {
		http.Error(w, fmt.Sprintf("print config: %v", err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/toml")
	w.Write(out)
}

func (s *Server) serveContainer(w http.ResponseWriter, r *http.Request) {
	src := s.opts.Containers
	if src == nil {
		http.Error(w, "containers are not available", http.StatusServiceUnavailable)
		return
	}
	ci, err := src.ContainerInfo(r.PathValue("id"))
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	case errors.Is(err, errdefs.ErrInvalidArgument):
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, s.opts.Log, ci)
}

func writeJSON(w http.ResponseWriter, log *slog.Logger, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if _, err := w.Write(append(b, '\n')); err != nil {
		log.Debug("write info response", "error", err)
	}
}
