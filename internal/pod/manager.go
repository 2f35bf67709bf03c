package pod

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/ident"
	"github.com/berth-cri/berth/internal/idmap"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/nsmgr"
	"github.com/berth-cri/berth/internal/oplock"
	"github.com/berth-cri/berth/internal/runtime"
	"github.com/berth-cri/berth/internal/store"
)

// Manager owns every pod. Its mutex guards only the in-memory index and
// is never held across a CNI, mount, exec or runtime call; each pod has
// its own operation lock serialising its stop and remove.
type Manager struct {
	cfg     func() *config.Config
	log     *slog.Logger
	ns      Pinner
	net     Network
	holders *holderRuntime
	store   store.Dir
	runDir  string
	events  *runtime.Events
	// exits receives the exits of PID namespace holders.
	exits *runtime.Owner
	done  chan struct{}
	wg    sync.WaitGroup

	// subordinate reads the host's subordinate id ranges, which the
	// mappings of pods' user namespaces must stay inside.
	subordinate func() (idmap.Subordinate, error)

	// cniCacheDir is libcni's cache, read by the orphan sweep.
	cniCacheDir string
	// broken and fromPrev are what loadRecords left for Recover.
	broken   []brokenPod
	fromPrev int

	mu    sync.Mutex
	pods  map[string]*entry
	names map[string]*reservation
}

// entry is one pod in the index.
type entry struct {
	// op is held by Stop, Remove and UpdateResources of this pod only.
	op  oplock.Lock
	rec *record // immutable after creation
	// writeMu orders status writes: each is durable before it is applied
	// in memory.
	writeMu sync.Mutex
	st      status // guarded by Manager.mu
	// removed is set (under Manager.mu) once the pod is gone, so a Stop
	// that waited for op behind a Remove sees it.
	removed bool
	// sealed (under Manager.mu) refuses new containers: set when a stop
	// or removal begins. admitted counts container creations under way;
	// drained is closed when it drops to zero while sealed.
	sealed   bool
	admitted int
	drained  chan struct{}
	// unpublished (under Manager.mu) hides a pod that Run made from
	// List, Get, Admit and events until Publish: the caller's hooks (NRI
	// RunPodSandbox) must complete before anyone sees or uses the pod.
	// Only in memory: a pod loaded at start is published.
	unpublished bool
}

func newEntry(rec *record, st status) *entry {
	return &entry{op: oplock.New(), rec: rec, st: st}
}

// reservation holds a pod name while RunPodSandbox works on it, so a
// retry of the same request waits for the first one instead of failing.
type reservation struct {
	done chan struct{}
	id   string
	err  error
}

// Deps are the pod manager's collaborators.
type Deps struct {
	Config func() *config.Config
	Log    *slog.Logger
	// Monitor runs PID namespace holders under conmon; nil refuses pods
	// that share one PID namespace (berthd wipe needs none).
	Monitor Conmon
	// Events receives pod lifecycle events; nil publishes none.
	Events *runtime.Events
	// Namespaces, Network and Runtime replace nsmgr, CNI and the
	// runtime.OCI of holders when set (unit tests).
	Namespaces Pinner
	Network    Network
	Runtime    func(runtime.OCI) OCIRuntime
	// Subordinate replaces the reading of /etc/subuid and /etc/subgid
	// when set (unit tests).
	Subordinate func() (idmap.Subordinate, error)
}

// Pinner pins pods' namespaces (*nsmgr.Manager).
type Pinner interface {
	Path(kind, id string) string
	Pin(ctx context.Context, req nsmgr.Request) (nsmgr.Paths, error)
	Unpin(paths nsmgr.Paths) error
	IsPinned(p string) bool
}

// Network attaches pods to their CNI network (*network.Manager).
type Network interface {
	Setup(ctx context.Context, a network.Attachment) (*network.Result, error)
	Teardown(ctx context.Context, a network.Attachment, network string) error
	Status() (ready bool, reason, message string)
	SetPodCIDR(cidr string) error
	Close() error
}

// Conmon runs PID namespace holders (*runtime.Monitor).
type Conmon interface {
	Create(ctx context.Context, o *runtime.CreateOptions) (*runtime.Created, error)
	ClearExit(id string)
	NewOwner() *runtime.Owner
}

// OCIRuntime is the part of an OCI runtime (runtime.OCI) holders need.
type OCIRuntime interface {
	Start(ctx context.Context, id string) error
	Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error
	Delete(ctx context.Context, id string, force bool) error
	State(ctx context.Context, id string) (*runtime.State, error)
}

// New builds the pod manager: its records under <state_dir>/pods, pinned
// namespaces under <run_dir>/ns, the CNI manager (which only starts a
// watch; configs are read on first use). Pod records already on disk are
// indexed; Recover then settles them against reality.
func New(d Deps) (*Manager, error) {
	cfg, log := d.Config, d.Log
	c := cfg().Berth
	st, err := store.Open(filepath.Join(c.StateDir, "pods"))
	if err != nil {
		return nil, err
	}
	if d.Namespaces == nil {
		d.Namespaces = nsmgr.New(filepath.Join(c.RunDir, "ns"), log.With("component", "nsmgr"))
	}
	if d.Network == nil {
		d.Network = network.New(network.Options{ConfDir: c.Network.NetworkDir, PluginDirs: c.Network.PluginDirs,
			DefaultNetwork: c.Network.DefaultNetwork, CacheDir: filepath.Join(c.StateDir, "cni"), Timeout: c.Network.Timeout.Duration},
			log.With("component", "network"))
	}
	if d.Runtime == nil {
		d.Runtime = func(r runtime.OCI) OCIRuntime { return r }
	}
	if d.Subordinate == nil {
		d.Subordinate = func() (idmap.Subordinate, error) { return idmap.ReadSubordinate("/etc/subuid", "/etc/subgid") }
	}
	m := &Manager{
		cfg:    cfg,
		log:    log,
		ns:     d.Namespaces,
		net:    d.Network,
		store:  st,
		runDir: filepath.Join(c.RunDir, "pods"),
		events: d.Events,
		done:   make(chan struct{}),
		pods:   map[string]*entry{},
		names:  map[string]*reservation{},
	}
	m.subordinate = d.Subordinate
	m.holders = &holderRuntime{cfg: cfg, root: filepath.Join(c.StateDir, "pause"), log: log, mon: d.Monitor, oci: d.Runtime}
	if d.Monitor != nil {
		m.exits = d.Monitor.NewOwner()
		m.holders.exits = m.exits
		m.wg.Add(1)
		go m.watchHolders()
	}
	m.cniCacheDir = filepath.Join(c.StateDir, "cni")
	m.loadRecords()
	return m, nil
}

// Close stops the CNI config watch and the holder exit watch.
func (m *Manager) Close() error {
	close(m.done)
	m.wg.Wait()
	return m.net.Close()
}

// watchHolders handles the exits of PID namespace holders.
func (m *Manager) watchHolders() {
	defer m.wg.Done()
	for {
		select {
		case <-m.done:
			return
		case n := <-m.exits.C:
			if !n.ConmonGone {
				m.holders.mon.ClearExit(n.ID)
				m.holderExited(n.ID)
			}
		}
	}
}

// emit publishes an event for the pod of entry e, as containerd does: the
// container id is the pod's. The CRI layer adds the containers' statuses.
func (m *Manager) emit(e *entry, types ...runtimeapi.ContainerEventType) {
	if m.events == nil {
		return
	}
	m.mu.Lock()
	sb, hidden := snapshot(e), e.unpublished
	m.mu.Unlock()
	if hidden {
		return
	}
	for _, t := range types {
		m.events.Publish(runtime.Event{PodID: sb.ID, ContainerEventResponse: &runtimeapi.ContainerEventResponse{
			ContainerId: sb.ID, ContainerEventType: t, CreatedAt: time.Now().UnixNano(), PodSandboxStatus: sb.CRIStatus(),
		}})
	}
}

// NetworkStatus reports the NetworkReady condition.
func (m *Manager) NetworkStatus() (ready bool, reason, message string) { return m.net.Status() }

// UpdatePodCIDR applies UpdateRuntimeConfig's pod CIDR.
func (m *Manager) UpdatePodCIDR(cidr string) error { return m.net.SetPodCIDR(cidr) }

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

func nameKey(md Metadata) string {
	return fmt.Sprintf("%s_%s_%s_%d", md.Name, md.Namespace, md.UID, md.Attempt)
}

// lookup finds a pod by full id or unique id prefix.
func (m *Manager) lookup(idOrPrefix string) (string, *entry, error) {
	if idOrPrefix == "" {
		return "", nil, fmt.Errorf("pod sandbox id is required: %w", errdefs.ErrInvalidArgument)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.pods[idOrPrefix]; ok {
		return idOrPrefix, e, nil
	}
	var found string
	for id := range m.pods {
		if strings.HasPrefix(id, idOrPrefix) {
			if found != "" {
				return "", nil, fmt.Errorf("pod sandbox id prefix %q is ambiguous: %w", idOrPrefix, errdefs.ErrInvalidArgument)
			}
			found = id
		}
	}
	if found == "" {
		return "", nil, fmt.Errorf("pod sandbox %q: %w", idOrPrefix, errdefs.ErrNotFound)
	}
	return found, m.pods[found], nil
}

// Get returns a snapshot of the published pod with this id or unique id
// prefix.
func (m *Manager) Get(idOrPrefix string) (*Sandbox, error) {
	return m.get(idOrPrefix, false)
}

// GetUnpublished is Get that also finds a pod Run made and Publish has
// not published yet: the hooks that run in between describe it.
func (m *Manager) GetUnpublished(idOrPrefix string) (*Sandbox, error) {
	return m.get(idOrPrefix, true)
}

func (m *Manager) get(idOrPrefix string, unpublished bool) (*Sandbox, error) {
	_, e, err := m.lookup(idOrPrefix)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e.unpublished && !unpublished {
		return nil, fmt.Errorf("pod sandbox %q: %w", idOrPrefix, errdefs.ErrNotFound)
	}
	return snapshot(e), nil
}

// Publish makes a pod Run made visible (List, Get) and usable (Admit),
// and announces it to event subscribers. Publishing a published pod does
// nothing.
func (m *Manager) Publish(id string) error {
	_, e, err := m.lookup(id)
	if err != nil {
		return err
	}
	m.mu.Lock()
	was := e.unpublished
	e.unpublished = false
	m.mu.Unlock()
	if was {
		m.emit(e, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT)
	}
	return nil
}

// List returns snapshots of the pods matching f, oldest first.
func (m *Manager) List(f Filter) []*Sandbox {
	m.mu.Lock()
	out := make([]*Sandbox, 0, len(m.pods))
	for id, e := range m.pods {
		if e.unpublished {
			continue
		}
		if f.ID != "" && !strings.HasPrefix(id, f.ID) {
			continue
		}
		if f.State != "" && e.st.State != f.State {
			continue
		}
		if !ident.LabelsMatch(e.rec.Labels, f.Labels) {
			continue
		}
		out = append(out, snapshot(e))
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b *Sandbox) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out
}

// snapshot copies e into a Sandbox; the caller holds m.mu.
func snapshot(e *entry) *Sandbox {
	r, st := e.rec, &e.st
	sb := &Sandbox{
		ID:             r.ID,
		Metadata:       r.Metadata,
		State:          st.State,
		CreatedAt:      r.CreatedAt,
		RuntimeHandler: r.RuntimeHandler,
		Labels:         maps.Clone(r.Labels),
		Annotations:    maps.Clone(r.Annotations),
		Hostname:       r.Hostname,
		Namespaces:     r.Namespaces,
		CgroupParent:   r.CgroupParent,
		ResolvConfPath: r.ResolvConfPath,
		HostnamePath:   r.HostnamePath,
		HostsPath:      r.HostsPath,
		LogDirectory:   r.LogDirectory,
		IPs:            slices.Clone(st.IPs),
		PortMappings:   slices.Clone(r.PortMappings),
		Sysctls:        maps.Clone(r.Sysctls),
		Privileged:     r.Privileged,
		Network:        st.Network,
		Resources:      st.Resources.clone(),
		IDMappings:     r.UserNS,
	}
	if r.DNS != nil {
		d := *r.DNS
		sb.DNS = &d
	}
	// Namespaces and shm exist only while the pod is ready: Stop
	// releases them.
	if st.State == StateReady {
		sb.NetNS, sb.IPCNS, sb.UTSNS = r.NSPaths.Net, r.NSPaths.IPC, r.NSPaths.UTS
		sb.ShmPath = r.ShmPath
		sb.UserNS = r.NSPaths.User
		if st.Holder != nil && st.Holder.Pid > 0 {
			sb.HolderPID = st.Holder.Pid
			sb.PIDNS = fmt.Sprintf("/proc/%d/ns/pid", st.Holder.Pid)
		}
	}
	return sb
}

// setStatus applies mutate to a pod's status: durably on disk first, then
// in memory, so nothing is reported that a crash could undo. A failed
// write leaves the status as it was. Writes of one pod are ordered.
func (m *Manager) setStatus(id string, e *entry, mutate func(*status)) error {
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	m.mu.Lock()
	next := e.st
	m.mu.Unlock()
	mutate(&next)
	next.Version = recordVersion
	next.Updated = time.Now()
	if err := m.store.Write(id, "status.json", &next); err != nil {
		return fmt.Errorf("pod %s: write status: %w", id, err)
	}
	m.mu.Lock()
	e.st = next
	m.mu.Unlock()
	return nil
}

func (e *entry) lockOp(ctx context.Context) error { return e.op.Lock(ctx, "pod "+e.rec.ID) }
