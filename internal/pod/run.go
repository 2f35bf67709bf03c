package pod

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/internal/ident"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/nsmgr"
)

// createTimeout bounds one pod creation, which keeps going after the
// caller gave up so that the caller's retry can pick the result up.
const createTimeout = 4 * time.Minute

// undoStack collects the inverse of every step that created something;
// run unwinds them newest first and only logs failures, so one stuck
// step does not keep the others from cleaning up.
type undoStack []func(context.Context) error

func (u *undoStack) push(f func(context.Context) error) { *u = append(*u, f) }

func (m *Manager) unwind(ctx context.Context, id string, u undoStack) {
	for i := len(u) - 1; i >= 0; i-- {
		if err := u[i](ctx); err != nil {
			m.log.Warn("undo pod creation step", "id", id, "error", err)
		}
	}
}

// Run creates a pod and returns its id; the pod stays hidden until
// Publish. A request whose metadata
// (name, namespace, uid, attempt) matches an existing or in-flight pod
// returns that pod's id: the kubelet retries a RunPodSandbox that timed
// out, and the work done meanwhile must be its answer.
func (m *Manager) Run(ctx context.Context, pc *runtimeapi.PodSandboxConfig, handler string) (string, error) {
	rec, err := buildRecord(m.cfg(), pc, handler)
	if err != nil {
		return "", err
	}
	nsOpts := pc.GetLinux().GetSecurityContext().GetNamespaceOptions()
	if rec.UserNS, err = userNamespace(nsOpts, rec.Namespaces, m.subordinate); err != nil {
		return "", err
	}
	key := nameKey(rec.Metadata)
	var r *reservation
	for {
		m.mu.Lock()
		var busy bool
		r, busy = m.names[key]
		if !busy {
			r = &reservation{done: make(chan struct{})}
			m.names[key] = r
			m.mu.Unlock()
			break
		}
		m.mu.Unlock()
		select {
		case <-r.done:
			if r.err == nil {
				return r.id, nil
			}
			// That attempt failed and released the name: try ourselves.
		case <-ctx.Done():
			return "", fmt.Errorf("wait for pod %s being created: %w", key, ctx.Err())
		}
	}
	go func() {
		// Detached from the request: a caller's timeout must not abort
		// the pipeline halfway, only stop this caller waiting.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
		defer cancel()
		id, err := m.create(cctx, rec)
		m.mu.Lock()
		r.id, r.err = id, err
		if err != nil {
			delete(m.names, key)
		}
		m.mu.Unlock()
		close(r.done)
	}()
	select {
	case <-r.done:
		return r.id, r.err
	case <-ctx.Done():
		return "", fmt.Errorf("pod %s is still being created; retry to get it: %w", key, ctx.Err())
	}
}

// create is the pipeline. Every step that makes something pushes its
// undo; any failure unwinds them all, leaving nothing behind.
func (m *Manager) create(ctx context.Context, rec *record) (id string, err error) {
	if id, err = ident.NewID(); err != nil {
		return "", err
	}
	var undo undoStack
	defer func() {
		if err != nil {
			m.unwind(context.WithoutCancel(ctx), id, undo)
			m.log.Info("pod sandbox creation failed", "name", rec.Metadata.Name, "namespace", rec.Metadata.Namespace, "error", err)
		}
	}()
	cfg := m.cfg()
	start := time.Now()
	rec.ID = id
	rec.CreatedAt = start
	dir, err := m.store.Create(id)
	if err != nil {
		return "", err
	}
	undo.push(func(context.Context) error { return m.store.Remove(id) })
	rec.RunDir = filepath.Join(m.runDir, id)
	if err := os.MkdirAll(rec.RunDir, 0o700); err != nil {
		return "", fmt.Errorf("create pod run dir: %w", err)
	}
	undo.push(func(context.Context) error { return os.RemoveAll(rec.RunDir) })
	rec.ResolvConfPath = filepath.Join(dir, "resolv.conf")
	rec.HostnamePath = filepath.Join(dir, "hostname")
	rec.HostsPath = filepath.Join(dir, "hosts")
	own := rec.Namespaces
	if own.Network == ModePod {
		rec.NSPaths.Net = m.ns.Path(nsmgr.Net, id)
		rec.NSPaths.UTS = m.ns.Path(nsmgr.UTS, id)
	}
	if rec.UserNS != nil {
		rec.NSPaths.User = m.ns.Path(nsmgr.User, id)
	}
	if own.IPC == ModePod {
		rec.NSPaths.IPC = m.ns.Path(nsmgr.IPC, id)
		rec.ShmPath = filepath.Join(rec.RunDir, "shm")
	}
	// pod.json goes to disk before anything outside the pod's dirs is
	// made, so a crash mid-way leaves a record (with no status.json yet)
	// naming every path the restart logic must clean.
	st := status{Version: recordVersion, State: StateCreating}
	if err := m.store.Write(id, "pod.json", rec); err != nil {
		return "", err
	}

	if rec.LogDirectory != "" {
		if _, serr := os.Stat(rec.LogDirectory); os.IsNotExist(serr) {
			st.LogDirCreated = true
		}
		if err := os.MkdirAll(rec.LogDirectory, 0o755); err != nil {
			return "", fmt.Errorf("create log directory %s: %w", rec.LogDirectory, err)
		}
		if st.LogDirCreated {
			undo.push(func(context.Context) error { return os.RemoveAll(rec.LogDirectory) })
		}
	}
	if cfg.Berth.Runtime.CgroupManager == "cgroupfs" {
		created, err := cgroups.Ensure(rec.CgroupParent)
		if err != nil {
			return "", err
		}
		st.CgroupsCreated = created
		undo.push(func(context.Context) error { cgroups.RemoveDirs(created); return nil })
	}

	tPin := time.Now()
	paths, err := m.ns.Pin(ctx, nsmgr.Request{
		ID: id, Net: own.Network == ModePod, UTS: own.Network == ModePod, IPC: own.IPC == ModePod,
		Hostname: rec.Hostname, Sysctls: rec.Sysctls, UserNS: rec.UserNS,
	})
	if err != nil {
		return "", fmt.Errorf("linux.sysctls or namespaces: %w", err)
	}
	undo.push(func(context.Context) error { return m.ns.Unpin(paths) })
	pinTook := time.Since(tPin)

	if rec.ShmPath != "" {
		if err := mountShm(rec.ShmPath, rec.ShmSize); err != nil {
			return "", err
		}
		undo.push(func(context.Context) error { return unmountShm(rec.ShmPath) })
	}
	if err := writeResolvConf(rec.ResolvConfPath, rec.DNS); err != nil {
		return "", err
	}
	if err := writeHostname(rec.HostnamePath, rec.Hostname); err != nil {
		return "", err
	}

	if own.Network == ModePod {
		att := m.attachment(rec)
		tNet := time.Now()
		res, err := m.net.Setup(ctx, att)
		m.log.Debug("CNI ADD done", "id", id, "took", time.Since(tNet))
		if err != nil {
			return "", err
		}
		st.Network, st.IPs = res.Network, res.IPs
		undo.push(func(ctx context.Context) error { return m.net.Teardown(ctx, att, res.Network) })
	}
	if err := writeHosts(rec.HostsPath, own.Network == ModeNode, rec.Hostname, st.IPs); err != nil {
		return "", err
	}

	if own.PID == ModePod {
		h, err := m.holders.start(ctx, rec)
		if err != nil {
			return "", err
		}
		st.Holder = h
		undo.push(func(ctx context.Context) error { return m.holders.remove(ctx, rec.RuntimeHandler, h) })
	}

	st.State = StateReady
	st.Updated = time.Now()
	if err := m.store.Write(id, "status.json", &st); err != nil {
		return "", err
	}
	e := newEntry(rec, st)
	e.unpublished = true
	m.mu.Lock()
	m.pods[id] = e
	m.mu.Unlock()
	m.log.Info("pod sandbox ready", "id", id, "name", rec.Metadata.Name, "namespace", rec.Metadata.Namespace,
		"ips", st.IPs, "took", time.Since(start), "pin_took", pinTook)
	return id, nil
}

func (m *Manager) attachment(rec *record) network.Attachment {
	return network.Attachment{
		PodID:        rec.ID,
		Name:         rec.Metadata.Name,
		Namespace:    rec.Metadata.Namespace,
		UID:          rec.Metadata.UID,
		NetNS:        rec.NSPaths.Net,
		PortMappings: rec.PortMappings,
		CgroupParent: rec.CgroupParent,
	}
}
