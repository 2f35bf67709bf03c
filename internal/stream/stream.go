// Package stream is berth's streaming server: the HTTP endpoint that
// kubectl exec, attach and port-forward reach through the kubelet. The
// protocols (SPDY and WebSocket) and the single-use, expiring URL tokens
// come from k8s.io/cri-streaming; this package implements its Runtime:
//
//   - Exec runs `runc exec --process <json>` of the command as berthd's
//     child, with the user, env, cwd, capabilities and no-new-privs of the
//     container's own process, on a pty (TTY) or on pipes.
//   - Attach connects to conmon's attach socket (SOCK_SEQPACKET, a 1-byte
//     stream id before each payload) and resizes through its ctl FIFO.
//   - PortForward dials the port inside the pod's network namespace from a
//     goroutine locked to an OS thread that entered it.
//
// Every session is tracked: it ends when its client goes away, when its
// container stops (ContainerStopped) and when the server closes.
package stream

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/runtime"
)

// ContainerLookup finds containers; the container manager implements it.
type ContainerLookup interface {
	// ExecTarget describes the container with this id (full id, as the CRI
	// passes it). An unknown id is an errdefs.ErrNotFound.
	ExecTarget(id string) (runtime.ExecTarget, error)
}

// PodLookup finds pods; the pod manager implements it.
type PodLookup interface {
	// NetNSPath is the path of the pod's network namespace, "" for a pod
	// on the host network. An unknown pod is an errdefs.ErrNotFound; a pod
	// whose namespace is gone (stopped) an errdefs.ErrFailedPrecondition.
	NetNSPath(podID string) (string, error)
}

// Config is the server's part of the berth config.
type Config struct {
	// Address and Port to listen on; port "0" picks a free one.
	Address string
	Port    string
	// TLS serves https with CertFile and KeyFile; a CAFile makes clients
	// present a certificate it signed. Reload re-reads the three files.
	TLS      bool
	CertFile string
	KeyFile  string
	CAFile   string
	// IdleTimeout closes a connection that carried nothing for this long.
	IdleTimeout time.Duration
	// WorkDir holds per-exec temporary files (process.json, pid file,
	// runtime log).
	WorkDir string
}

// ConfigFrom takes the streaming settings out of a berth config snapshot.
func ConfigFrom(c *config.Config) Config {
	api := c.Berth.API
	return Config{
		Address:     api.StreamAddress,
		Port:        api.StreamPort,
		TLS:         api.StreamEnableTLS,
		CertFile:    api.StreamTLSCert,
		KeyFile:     api.StreamTLSKey,
		CAFile:      api.StreamTLSCA,
		IdleTimeout: api.StreamIdleTimeout.Duration,
		WorkDir:     filepath.Join(c.Berth.RunDir, "exec"),
	}
}

// Server is the running streaming server.
type Server struct {
	cfg        Config
	log        *slog.Logger
	containers ContainerLookup
	pods       PodLookup

	lib      streaming.Server
	http     *http.Server
	ln       net.Listener
	tls      *tlsFiles // nil without TLS
	conns    *connRegistry
	sessions *sessions
	served   chan struct{}
	url      *url.URL
}

// closeTimeout bounds how long Close waits for sessions to wind down.
const closeTimeout = 10 * time.Second

// New listens on the configured address and starts serving. Either
// lookup may be nil until its manager exists; requests needing it then
// fail as unavailable.
func New(cfg Config, containers ContainerLookup, pods PodLookup, log *slog.Logger) (*Server, error) {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = streaming.DefaultConfig.StreamIdleTimeout
	}
	// Whatever is in the work dir was left by sessions of a previous run.
	if err := os.RemoveAll(cfg.WorkDir); err != nil {
		return nil, fmt.Errorf("clean stream work dir: %w", err)
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o700); err != nil {
		return nil, fmt.Errorf("create stream work dir: %w", err)
	}
	s := &Server{
		cfg:        cfg,
		log:        log,
		containers: containers,
		pods:       pods,
		conns:      newConnRegistry(),
		sessions:   newSessions(),
		served:     make(chan struct{}),
	}
	scheme := "http"
	if cfg.TLS {
		if cfg.CertFile == "" || cfg.KeyFile == "" {
			return nil, fmt.Errorf("stream_enable_tls needs stream_tls_cert and stream_tls_key: %w", errdefs.ErrInvalidArgument)
		}
		s.tls = &tlsFiles{cert: cfg.CertFile, key: cfg.KeyFile, ca: cfg.CAFile}
		if err := s.tls.load(); err != nil {
			return nil, err
		}
		scheme = "https"
	}
	addr := net.JoinHostPort(cfg.Address, cfg.Port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("streaming server: listen on %s: %w", addr, err)
	}
	s.url = &url.URL{Scheme: scheme, Host: ln.Addr().String()}
	lcfg := streaming.DefaultConfig
	lcfg.Addr = s.url.Host
	lcfg.BaseURL = s.url
	lcfg.StreamIdleTimeout = cfg.IdleTimeout
	lib, err := streaming.NewServer(lcfg, &criRuntime{s: s})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("streaming server: %w", err)
	}
	s.lib = lib
	s.ln = &trackingListener{Listener: ln, reg: s.conns}
	if s.tls != nil {
		s.ln = s.tls.listener(s.ln)
	}
	s.http = &http.Server{
		Handler:           lib,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       90 * time.Second, // between requests; streams use cfg.IdleTimeout
		ConnContext:       s.conns.connContext,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(s.served)
		if err := s.http.Serve(s.ln); err != nil && err != http.ErrServerClosed {
			s.log.Error("streaming server stopped", "error", err)
		}
	}()
	s.log.Info("streaming server listening", "url", s.url.String())
	return s, nil
}

// URL is the base URL of the server (scheme and host:port).
func (s *Server) URL() string { return s.url.String() }

// GetExec checks that the container exists and runs, and returns the
// single-use URL of an exec session.
func (s *Server) GetExec(req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if len(req.GetCmd()) == 0 {
		return nil, fmt.Errorf("exec: no command: %w", errdefs.ErrInvalidArgument)
	}
	if _, err := s.runningTarget(req.GetContainerId()); err != nil {
		return nil, err
	}
	return s.lib.GetExec(req)
}

// GetAttach checks that the container exists and runs, and returns the
// single-use URL of an attach session.
func (s *Server) GetAttach(req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	if _, err := s.runningTarget(req.GetContainerId()); err != nil {
		return nil, err
	}
	return s.lib.GetAttach(req)
}

// GetPortForward checks that the pod exists and has a network namespace,
// and returns the single-use URL of a port-forward session.
func (s *Server) GetPortForward(req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	for _, p := range req.GetPort() {
		if p <= 0 || p > 65535 {
			return nil, fmt.Errorf("port-forward: %d is not a port: %w", p, errdefs.ErrInvalidArgument)
		}
	}
	if _, err := s.netNS(req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return s.lib.GetPortForward(req)
}

// ContainerStopped ends the exec and attach sessions of a container; the
// container manager calls it when the container stops, so that execs in a
// shared PID namespace do not outlive it.
func (s *Server) ContainerStopped(id string) {
	if n := s.sessions.cancelContainer(id); n > 0 {
		s.log.Debug("ended streaming sessions of stopped container", "id", id, "sessions", n)
	}
}

// Sessions reports how many exec, attach and port-forward sessions run.
func (s *Server) Sessions() int { return s.sessions.count() }

// Reload re-reads the TLS certificate, key and CA; on error the ones in
// use stay.
func (s *Server) Reload() error {
	if s.tls == nil {
		return nil
	}
	if err := s.tls.load(); err != nil {
		s.log.Error("streaming server: keeping the TLS files in use", "error", err)
		return err
	}
	s.log.Info("streaming server: TLS files reloaded")
	return nil
}

// Close stops listening, ends every session (killing exec processes) and
// waits for them to finish.
func (s *Server) Close() error {
	s.sessions.closeAll()
	err := s.http.Close()
	s.conns.closeAll()
	if !s.sessions.wait(closeTimeout) {
		s.log.Warn("streaming sessions still running after close", "sessions", s.sessions.count())
	}
	<-s.served
	if err != nil {
		return fmt.Errorf("close streaming server: %w", err)
	}
	return nil
}

func (s *Server) target(id string) (runtime.ExecTarget, error) {
	if id == "" {
		return runtime.ExecTarget{}, fmt.Errorf("no container id: %w", errdefs.ErrInvalidArgument)
	}
	if s.containers == nil {
		return runtime.ExecTarget{}, fmt.Errorf("container %s: no container manager: %w", id, errdefs.ErrUnavailable)
	}
	// The container manager's errors name the container.
	t, err := s.containers.ExecTarget(id)
	if err != nil {
		return runtime.ExecTarget{}, err
	}
	return t, nil
}

func (s *Server) runningTarget(id string) (runtime.ExecTarget, error) {
	t, err := s.target(id)
	if err != nil {
		return runtime.ExecTarget{}, err
	}
	if !t.Running {
		return runtime.ExecTarget{}, fmt.Errorf("container %s is not running: %w", id, errdefs.ErrFailedPrecondition)
	}
	return t, nil
}

func (s *Server) netNS(podID string) (string, error) {
	if podID == "" {
		return "", fmt.Errorf("no pod sandbox id: %w", errdefs.ErrInvalidArgument)
	}
	if s.pods == nil {
		return "", fmt.Errorf("pod %s: no pod manager: %w", podID, errdefs.ErrUnavailable)
	}
	// The pod manager's errors name the pod.
	p, err := s.pods.NetNSPath(podID)
	if err != nil {
		return "", err
	}
	return p, nil
}
