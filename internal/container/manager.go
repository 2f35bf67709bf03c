// Package container is berth's container manager: creation as a pipeline
// with an undo stack (name reservation, writable layer from
// containers/storage, OCI spec from internal/spec, records, conmon),
// start, stop (stop signal, timeout, SIGKILL), remove, status, list,
// resource updates, log reopening, exec-sync and lifecycle events.
//
// Concurrency: Manager.mu guards the index only; each container's mu
// guards its status only. Neither is ever held across a runtime, conmon,
// storage or disk call, so status and list never wait for a slow
// operation. Lifecycle operations on one container (start, remove,
// update) are serialised by its op semaphore; stop is not, so that a
// stop can always interrupt a slow start.
//
// Exits arrive from the runtime layer's exit-dir watcher, routed to the
// manager for the ids it claimed (no polling); a conmon that dies without
// writing an exit file is noticed by the reaper (berthd is the subreaper
// of every conmon), by a periodic pid+start-time probe, and on every
// status read of a running container.
package container

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"go.podman.io/storage"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/image"
	"github.com/berth-cri/berth/internal/oplock"
	"github.com/berth-cri/berth/internal/runtime"
	"github.com/berth-cri/berth/internal/spec"
	"github.com/berth-cri/berth/internal/store"
)

// probeInterval is how often running containers' conmons are checked for
// having died without an exit file (CRI-O checks every 10 s).
const probeInterval = 10 * time.Second

// Images is what the manager needs from the image service: resolving
// images, their storage, and the mounts of images used as volumes,
// which the image service counts by container.
type Images interface {
	ResolveNamed(ctx context.Context, nameOrID, userSpecified string) (*image.ImageInfo, error)
	Store() (storage.Store, error)
	MountImage(ctx context.Context, nameOrID, holder string) (*image.MountedImage, error)
	ReleaseImages(holder string) error
	AdoptImage(id, holder string)
}

// Layers is the part of containers/storage that holds the containers'
// writable layers.
type Layers interface {
	CreateContainer(id string, names []string, image, layer, metadata string, options *storage.ContainerOptions) (*storage.Container, error)
	Mount(id, mountLabel string) (string, error)
	Unmount(id string, force bool) (bool, error)
	DeleteContainer(id string) error
	Containers() ([]storage.Container, error)
}

// Conmon is the part of the runtime layer's conmon driver the manager
// uses (*runtime.Monitor, through monitorConmon).
type Conmon interface {
	Prepare(o *runtime.CreateOptions) (Pending, error)
	Conmons() map[string]runtime.Proc
	ClearExit(id string)
	RemoveAttachLink(id string)
	AttachSocket(id string) string
	NewOwner() *runtime.Owner
}

// Pending is a conmon held at its start pipe (*runtime.Pending).
type Pending interface {
	Start(ctx context.Context) (*runtime.Created, error)
	Abort()
}

// monitorConmon is the real Conmon: Go wants Prepare to return the
// interface.
type monitorConmon struct{ *runtime.Monitor }

func (m monitorConmon) Prepare(o *runtime.CreateOptions) (Pending, error) {
	return m.Monitor.Prepare(o)
}

// OCIRuntime is the part of an OCI runtime (runtime.OCI) the manager calls.
type OCIRuntime interface {
	Start(ctx context.Context, id string) error
	State(ctx context.Context, id string) (*runtime.State, error)
	Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error
	Delete(ctx context.Context, id string, force bool) error
	Update(ctx context.Context, id string, res *specs.LinuxResources) error
	ExecSync(ctx context.Context, id string, p *specs.Process, timeout time.Duration, limit int) (*runtime.ExecResult, error)
	List(ctx context.Context) ([]runtime.State, error)
}

// Deps are the manager's collaborators.
type Deps struct {
	Config func() *config.Config
	Log    *slog.Logger
	Images Images
	// Monitor runs containers under conmon and routes their exits;
	// Events receives their lifecycle events.
	Monitor *runtime.Monitor
	Events  *runtime.Events
	// Conmon, Runtime and Layers replace Monitor, the runtime.OCI of
	// each container and Images.Store when set (unit tests).
	Conmon  Conmon
	Runtime func(runtime.OCI) OCIRuntime
	Layers  func() (Layers, error)
	// Host is the node's capabilities; nil probes the running system.
	Host *spec.Host
	// Features tells what each OCI runtime supports; nil makes a probe
	// of the manager's own.
	Features *runtime.FeatureProbe
	// AllowedAnnotations lists, per runtime handler, the berth behaviour
	// annotations (io.berth.*) containers of that handler may carry; nil
	// allows none.
	AllowedAnnotations func(handler string) []string
	// Rebooted says the node rebooted since the records were written:
	// nothing they name runs any more.
	Rebooted bool
	// OOM, if set, counts OOM kills by container name (metrics).
	OOM OOMCounter
	// Usage reads container cgroups (a memory limit is never lowered
	// below what a container uses); nil probes the host's.
	Usage cgroups.Reader
	// Extensions adds CDI devices, OCI hooks and default mounts to each
	// container's spec; nil adds none.
	Extensions SpecExtensions
}

// OOMCounter is told of every OOM-killed container and of removals, so
// per-name counts do not outlive their containers.
type OOMCounter interface {
	ContainerOOM(name string)
	ContainerRemoved(name string)
}

// Manager owns every container.
type Manager struct {
	cfg     func() *config.Config
	log     *slog.Logger
	images  Images
	host    *spec.Host
	hier    *cgroups.Hierarchies
	usage   cgroups.Reader // nil when the host's cgroups cannot be read
	mon     Conmon
	oci     func(runtime.OCI) OCIRuntime
	layers  func() (Layers, error)
	exits   *runtime.Owner
	records store.Dir
	runDir  string
	ext     SpecExtensions
	events  *runtime.Events
	allowed func(string) []string
	oom     OOMCounter
	seccomp []byte
	// features answers which runtimes can make rro mounts.
	features *runtime.FeatureProbe
	apparmor *appArmor
	loaded   LoadReport
	adapted  sync.Map // messages already logged
	done     chan struct{}
	wg       sync.WaitGroup

	mu    sync.RWMutex
	ctrs  map[string]*container
	names map[string]*reservation
}

// container is one container in the index.
type container struct {
	meta *Meta // immutable
	// op serialises start, remove and update of this container.
	op oplock.Lock
	// writeMu serialises writes of status.json.
	writeMu sync.Mutex

	mu sync.Mutex
	st Status
	// exited is closed when st.State becomes exited.
	exited chan struct{}
	// starting is set while runc start runs; an exit seen meanwhile is
	// deferred (pendingExit) so that STARTED is published before STOPPED.
	starting    bool
	pendingExit bool
	// stopping is the stop in progress, if any.
	stopping *stopOp
	// cleaned is closed once the runtime state and conmon's cgroup of an
	// exited container are gone; nil until that cleanup has started.
	cleaned chan struct{}
	removed bool
	process *specs.Process // for exec; loaded from config.json if nil
}

// reservation holds a container name while CreateContainer works on it.
type reservation struct {
	done chan struct{}
	id   string
	err  error
	// abandoned is set when the creator's client went away; unclaimed
	// when it did so and the creation succeeded: a retry with the same
	// name then gets this container.
	abandoned, unclaimed bool
}

// New builds the manager, claims its exits and loads the records left by
// a previous berthd. The exits that happened meanwhile are delivered by
// the monitor's Rescan once every owner has loaded.
func New(d Deps) (*Manager, error) {
	cfg := d.Config().Berth
	host := d.Host
	if host == nil {
		h, err := spec.ProbeHost()
		if err != nil {
			return nil, fmt.Errorf("probe host: %w", err)
		}
		host = h
	}
	for _, limit := range host.Limits() {
		d.Log.Warn("this host limits containers; berth adapts", "limit", limit)
	}
	hier, err := cgroups.ProbeHierarchies()
	if err != nil {
		return nil, err
	}
	usage := d.Usage
	if usage == nil {
		if usage, err = cgroups.ProbeReader(); err != nil {
			d.Log.Warn("cannot read container cgroups: memory limit decreases are not checked against usage", "error", err)
			usage = nil
		}
	}
	records, err := store.Open(filepath.Join(cfg.StateDir, "containers"))
	if err != nil {
		return nil, err
	}
	if d.Conmon == nil {
		d.Conmon = monitorConmon{d.Monitor}
	}
	if d.Runtime == nil {
		d.Runtime = func(r runtime.OCI) OCIRuntime { return r }
	}
	if d.Layers == nil {
		d.Layers = func() (Layers, error) { return d.Images.Store() }
	}
	if d.Features == nil {
		d.Features = runtime.NewFeatureProbe()
	}
	m := &Manager{
		cfg: d.Config, log: d.Log, images: d.Images, host: host, hier: hier, usage: usage, mon: d.Conmon, oci: d.Runtime, layers: d.Layers,
		exits: d.Conmon.NewOwner(), records: records, runDir: filepath.Join(cfg.RunDir, "containers"), events: d.Events,
		allowed: d.AllowedAnnotations, oom: d.OOM, features: d.Features, apparmor: newAppArmor(), done: make(chan struct{}),
		ctrs: map[string]*container{}, names: map[string]*reservation{}, ext: d.Extensions,
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	if p := cfg.Runtime.SeccompProfile; p != "" {
		if m.seccomp, err = os.ReadFile(p); err != nil {
			return nil, fmt.Errorf("seccomp_profile: %w", err)
		}
	}
	if err := os.MkdirAll(m.runDir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", m.runDir, err)
	}
	m.loaded = m.load(d.Rebooted)
	m.wg.Add(2)
	go m.watchExits()
	go m.probeLoop()
	return m, nil
}

// watchExits handles the exit notices of the manager's containers.
func (m *Manager) watchExits() {
	defer m.wg.Done()
	for {
		select {
		case <-m.done:
			return
		case n := <-m.exits.C:
			if n.ConmonGone {
				m.goBackground(func() { m.conmonExited(n.ID) })
			} else {
				m.goBackground(func() { m.handleExit(n.ID) })
			}
		}
	}
}

// Loaded reports what loading the records at start found.
func (m *Manager) Loaded() LoadReport { return m.loaded }

// Close stops watching; containers keep running under their conmons.
func (m *Manager) Close() error {
	close(m.done)
	m.wg.Wait()
	return nil
}

func (m *Manager) goBackground(f func()) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f()
	}()
}

// logAdapted logs each adaptation to the host once per daemon.
func (m *Manager) logAdapted(msgs []string) {
	for _, s := range msgs {
		if _, seen := m.adapted.LoadOrStore(s, true); !seen {
			m.log.Warn("adapting containers to this host", "change", s)
		}
	}
}

// get finds a container by full id or unique id prefix.
func (m *Manager) get(idOrPrefix string) (*container, error) {
	if idOrPrefix == "" {
		return nil, fmt.Errorf("container id is required: %w", errdefs.ErrInvalidArgument)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if c, ok := m.ctrs[idOrPrefix]; ok {
		return c, nil
	}
	var found *container
	for id, c := range m.ctrs {
		if strings.HasPrefix(id, idOrPrefix) {
			if found != nil {
				return nil, fmt.Errorf("container id prefix %q is ambiguous: %w", idOrPrefix, errdefs.ErrInvalidArgument)
			}
			found = c
		}
	}
	if found == nil {
		return nil, fmt.Errorf("container %q: %w", idOrPrefix, errdefs.ErrNotFound)
	}
	return found, nil
}

// snapshot returns a copy of c's status.
func (c *container) snapshot() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

func (c *container) lockOp(ctx context.Context) error { return c.op.Lock(ctx, "container "+c.meta.ID) }

// persist writes c's current status. Writers are serialised per
// container and each writes the state current when it writes, so
// concurrent transitions (a start racing an exit) never leave an older
// state on disk after a newer one. An RPC reports a transition only once
// it is written, and fails (rolling it back) when the write does; an exit
// seen in the background is logged instead, since conmon's exit file
// stays the durable record of it.
func (m *Manager) persist(c *container) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	st := c.snapshot()
	st.Version = recordVersion
	if err := m.records.WriteVolatile(c.meta.ID, statusFile, &st); err != nil {
		return fmt.Errorf("container %s: write status: %w", c.meta.ID, err)
	}
	return nil
}

// persistLogged is persist for transitions nobody waits for.
func (m *Manager) persistLogged(c *container) {
	if err := m.persist(c); err != nil {
		m.log.Error("write container status", "id", c.meta.ID, "error", err)
	}
}

// probeLoop checks the conmon of every running container now and then:
// after a restart conmons are no longer berthd's children, so the reaper
// cannot notice their death.
func (m *Manager) probeLoop() {
	defer m.wg.Done()
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for {
		select {
		case <-m.done:
			return
		case <-t.C:
			m.mu.RLock()
			var all []*container
			for _, c := range m.ctrs {
				all = append(all, c)
			}
			m.mu.RUnlock()
			for _, c := range all {
				m.checkConmon(c)
			}
		}
	}
}
