// Package nri hosts NRI plugins (Node Resource Interface) through the
// adaptation package of github.com/containerd/nri: pre-installed plugins
// that berthd starts, and external ones that connect to its socket.
//
// The lifecycle layer calls the event methods at the points of each
// operation (RunPodSandbox after the pod runs, CreateContainer on the
// finished spec, StopContainer after the stop, ...). The package never
// calls into the pod or container managers directly: it reads them
// through Source and changes containers through Updater, both
// implemented by adapters in the daemon. A disabled Service (nil, or
// enable_nri = false) delivers nothing and adjusts nothing.
package nri

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
)

// Pod and Container are the NRI views of a pod and a container.
type (
	Pod       = api.PodSandbox
	Container = api.Container
)

// ContainerStopped is the state of a container that has stopped.
const ContainerStopped = api.ContainerState_CONTAINER_STOPPED

// Source reads pods and containers as NRI describes them. An unknown id
// is an error.
type Source interface {
	NRIPod(id string) (*Pod, error)
	NRIPods() []*Pod
	NRIContainer(id string) (*Container, error)
	NRIContainers() []*Container
	NRIPodContainers(podID string) []*Container
}

// Updater applies what plugins ask of other containers, through berth's
// own update and stop paths.
type Updater interface {
	UpdateResources(ctx context.Context, id string, r *runtimeapi.LinuxContainerResources) error
	Stop(ctx context.Context, id string, timeout int64) error
}

// CDIInjector resolves CDI devices a plugin's adjustment names and adds
// them to a spec (internal/ociext, wired by the daemon).
type CDIInjector interface {
	InjectCDIDevices(spec *rspec.Spec, names []string) error
}

// Options configure New.
type Options struct {
	Config  config.NRI
	Name    string
	Version string
	Source  Source
	Updater Updater
	// CDI resolves the CDI devices of adjustments; nil refuses them.
	CDI CDIInjector
	Log *slog.Logger
	// RunDir is berthd's run dir: the pre-installed plugins are handed
	// to the adaptation from a directory made there when nri_plugin_dir
	// holds files it would refuse (see pluginDir).
	RunDir string
}

// Service hosts the plugins of one berthd.
type Service struct {
	nri     *adaptation.Adaptation
	src     Source
	upd     Updater
	cdi     CDIInjector
	log     *slog.Logger
	plugins *pluginTable
	socket  string

	// mu guards the delivery marks that keep each once-only event once,
	// across retries of the request that caused it.
	mu          sync.Mutex
	podsRun     map[string]bool
	podsStopped map[string]bool
	ctrsCreated map[string]bool
	ctrsStopped map[string]bool
	// podRuns are the RunPodSandbox deliveries underway, closed when
	// each ends.
	podRuns map[string]chan struct{}
}

// New builds the service; nothing runs until Start. With enable_nri off
// it returns nil, a Service that does nothing.
func New(opts Options) (*Service, error) {
	c := opts.Config
	if !c.Enable {
		return nil, nil
	}
	s := &Service{
		src: opts.Source, upd: opts.Updater, cdi: opts.CDI, log: opts.Log, socket: c.Listen,
		podsRun: map[string]bool{}, podsStopped: map[string]bool{},
		ctrsCreated: map[string]bool{}, ctrsStopped: map[string]bool{}, podRuns: map[string]chan struct{}{},
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.plugins = newPluginTable(s.log)
	plugins := c.PluginDir
	if plugins != "" {
		var err error
		if plugins, err = pluginDir(c.PluginDir, filepath.Join(opts.RunDir, "nri-plugins"), s.log); err != nil {
			return nil, fmt.Errorf("nri: %w", err)
		}
	}
	// The timeouts are the module's process-wide settings; berthd hosts
	// one adaptation, so setting them here, once, is setting them for it.
	adaptation.SetPluginRegistrationTimeout(c.RegistrationTimeout.Duration)
	adaptation.SetPluginRequestTimeout(c.RequestTimeout.Duration)
	nopts := []adaptation.Option{
		adaptation.WithPluginPath(plugins),
		adaptation.WithPluginConfigPath(c.PluginConfigDir),
		adaptation.WithSocketPath(c.Listen),
		adaptation.WithMetrics(s.plugins),
	}
	if c.DisableConnections {
		nopts = append(nopts, adaptation.WithDisabledExternalConnections())
		s.socket = ""
	}
	a, err := adaptation.New(opts.Name, opts.Version, s.synchronize, s.updateFromPlugin, nopts...)
	if err != nil {
		return nil, fmt.Errorf("nri: %w", err)
	}
	s.nri = a
	return s, nil
}

// Start launches the pre-installed plugins, synchronizes them with the
// pods and containers there are, and opens the socket for external ones.
func (s *Service) Start() error {
	if s == nil {
		return nil
	}
	if err := s.nri.Start(); err != nil {
		return fmt.Errorf("nri: start: %w", err)
	}
	s.log.Info("NRI started", "socket", s.socket)
	return nil
}

// Stop closes the socket and stops the pre-installed plugins.
func (s *Service) Stop() {
	if s == nil {
		return
	}
	s.nri.Stop()
}

// Block keeps a newly connected plugin from being synchronized until the
// returned func is called. An operation that makes or removes a pod or a
// container and delivers its events holds it throughout, so that a
// plugin sees that object either in its synchronization or in events,
// never in both and never in neither. Take it before anything else that
// may wait, and never twice in one operation.
func (s *Service) Block() (unblock func()) {
	if s == nil {
		return func() {}
	}
	b := s.nri.BlockPluginSync()
	var once sync.Once
	return func() { once.Do(b.Unblock) }
}

// synchronize hands a newly connected plugin every pod and container
// and applies the updates it asks for.
func (s *Service) synchronize(ctx context.Context, cb adaptation.SyncCB) error {
	pods := s.src.NRIPods()
	ctrs := s.src.NRIContainers()
	updates, err := cb(ctx, pods, ctrs)
	if err != nil {
		return fmt.Errorf("synchronize plugin: %w", err)
	}
	s.log.Info("NRI plugin synchronized", "pods", len(pods), "containers", len(ctrs), "updates", len(updates))
	s.applyUpdates(ctx, updates, "")
	return nil
}

// updateFromPlugin applies updates a plugin asks for on its own; it
// returns those that failed.
func (s *Service) updateFromPlugin(ctx context.Context, updates []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) {
	return s.applyUpdates(ctx, updates, ""), nil
}

// applyUpdates changes the resources of other containers as plugins ask
// (skip is the container whose own update the caller applies); an update
// of an unknown container is logged and returned as failed.
func (s *Service) applyUpdates(ctx context.Context, updates []*api.ContainerUpdate, skip string) []*api.ContainerUpdate {
	var failed []*api.ContainerUpdate
	for _, u := range updates {
		id := u.GetContainerId()
		if id == skip {
			continue
		}
		if u.GetLinux().GetResources() == nil {
			continue
		}
		// An update names only what it changes; the rest stays as the
		// container's spec has it (berth keeps it equal to what is in
		// force).
		var base *runtimeapi.LinuxContainerResources
		if cur, err := s.src.NRIContainer(id); err == nil {
			base = toCRIResources(cur.GetLinux().GetResources())
		}
		r := mergeCRIResources(base, u.GetLinux().GetResources())
		if err := s.upd.UpdateResources(ctx, id, r); err != nil {
			lvl := slog.LevelError
			if u.GetIgnoreFailure() {
				lvl = slog.LevelWarn
			}
			s.log.Log(ctx, lvl, "NRI: update of a container a plugin asked for failed", "container", id, "error", err)
			if !u.GetIgnoreFailure() {
				failed = append(failed, u)
			}
		}
	}
	return failed
}

// evict stops the containers plugins asked to evict (the responses carry
// the field, though the v0.12 adaptation and stub never fill it), as a kubelet's stop
// with no grace period would, and tells the plugins.
func (s *Service) evict(ctx context.Context, evictions []*api.ContainerEviction) {
	for _, e := range evictions {
		id := e.GetContainerId()
		s.log.Warn("NRI: plugin evicts container", "container", id, "reason", e.GetReason())
		if err := s.upd.Stop(ctx, id, 0); err != nil {
			s.log.Error("NRI: eviction failed", "container", id, "error", err)
			continue
		}
		s.StopContainer(ctx, id)
	}
}

// PluginInfo describes a connected plugin, for berth info.
type PluginInfo struct {
	Name        string    `json:"name"`
	ConnectedAt time.Time `json:"connected_at"`
	// Connections counts the plugins connected under this name: more
	// than one is a misconfiguration berth logs but cannot refuse.
	Connections int `json:"connections"`
}

// Info is NRI's part of berth info and the info socket's /info.
type Info struct {
	Enabled bool   `json:"enabled"`
	Socket  string `json:"socket,omitempty"`
	// Count is the adaptation's own count of plugins.
	Count   int          `json:"count"`
	Plugins []PluginInfo `json:"plugins"`
}

// Info reports whether NRI is on and the plugins connected.
func (s *Service) Info() Info {
	if s == nil {
		return Info{Plugins: []PluginInfo{}}
	}
	plugins, count := s.plugins.list()
	return Info{Enabled: true, Socket: s.socket, Count: count, Plugins: plugins}
}

// mark records that an event of a once-only kind reached the plugins for
// id; it reports whether it had not before.
func (s *Service) mark(set map[string]bool, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if set[id] {
		return false
	}
	set[id] = true
	return true
}

func (s *Service) marked(set map[string]bool, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return set[id]
}

func (s *Service) forget(id string, sets ...map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, set := range sets {
		delete(set, id)
	}
}

// active reports whether there is a plugin to tell: with none, events
// skip describing pods and containers (a verbose status and a spec read
// each). The count changes only when the adaptation adds a plugin, after
// its synchronization and so under no Block, or drops one.
func (s *Service) active() bool {
	return s != nil && s.plugins.active()
}
