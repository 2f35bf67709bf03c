package pod

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/internal/errdefs"
)

// Stop releases a sealed pod whose containers are stopped (see Seal):
// the holder, the network (CNI DEL, which also drops its host ports),
// /dev/shm and the pinned namespaces. It is idempotent and succeeds for a
// pod that is already gone or half torn down.
func (m *Manager) Stop(ctx context.Context, id string) error {
	return m.withPod(ctx, id, func(id string, e *entry) error { return m.release(ctx, id, e, false) })
}

// withPod runs f on the pod under its operation lock, which a deadline
// of ctx interrupts. A pod that is unknown or already removed is a
// success without calling f: Stop and Remove are idempotent.
func (m *Manager) withPod(ctx context.Context, idOrPrefix string, f func(id string, e *entry) error) error {
	id, e, err := m.lookup(idOrPrefix)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := e.lockOp(ctx); err != nil {
		return err
	}
	defer e.op.Unlock()
	if m.isRemoved(e) {
		return nil
	}
	return f(id, e)
}

// release frees what a running pod holds. With force (Remove), a CNI
// DEL failure is logged and skipped: the kubelet cannot do anything about
// it and the pod must still go.
func (m *Manager) release(ctx context.Context, id string, e *entry, force bool) error {
	m.mu.Lock()
	st := e.st
	m.mu.Unlock()
	rec := e.rec
	if st.State == StateReady {
		// Not ready on disk before anything is torn down, with the network
		// and holder still named: a crash part-way then leaves a pod the
		// next berthd reports not ready, and a retried stop or remove
		// repeats the (idempotent) steps from the record.
		if err := m.setStatus(id, e, func(s *status) { s.State = StateNotReady }); err != nil {
			return err
		}
	}
	if st.Holder != nil {
		if err := m.holders.remove(ctx, rec.RuntimeHandler, st.Holder); err != nil {
			if !force {
				return fmt.Errorf("stop pod %s: %w", id, err)
			}
			m.log.Warn("remove PID namespace holder", "id", id, "error", err)
		}
	}
	if st.Network != "" {
		tNet := time.Now()
		err := m.net.Teardown(ctx, m.attachment(rec), st.Network)
		m.log.Debug("CNI DEL done", "id", id, "took", time.Since(tNet))
		if err != nil {
			if !force {
				return fmt.Errorf("stop pod %s: %w", id, err)
			}
			m.log.Warn("tear down pod network; removing the pod anyway", "id", id, "error", err)
		}
	}
	if err := unmountShm(rec.ShmPath); err != nil {
		return fmt.Errorf("stop pod %s: %w", id, err)
	}
	if err := m.ns.Unpin(rec.NSPaths); err != nil {
		return fmt.Errorf("stop pod %s: %w", id, err)
	}
	// One status write for all of it: a crash before it only means the
	// next Stop repeats steps that are all idempotent.
	if st.State == StateReady || st.Network != "" || st.Holder != nil {
		if err := m.setStatus(id, e, func(s *status) {
			s.State, s.Network, s.Holder = StateNotReady, "", nil
		}); err != nil {
			return err
		}
		m.log.Info("pod sandbox stopped", "id", id)
		m.emit(e, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
	}
	return nil
}

// holderExited is told that the PID namespace holder of pod id ended. For a ready pod whose PID namespace holder it is, the pod is no
// longer ready: the holder was PID 1 of the pod's PID namespace, so every
// container in it died too and no new one can join. The kubelet then stops
// the pod (releasing its network) and makes a new one.
func (m *Manager) holderExited(id string) {
	m.mu.Lock()
	e := m.pods[id]
	ready := e != nil && e.st.State == StateReady && e.st.Holder != nil
	m.mu.Unlock()
	if !ready {
		return // not a pod, or a stop already under way
	}
	m.log.Warn("pod sandbox is no longer ready: its PID namespace holder exited", "id", id)
	if err := m.setStatus(id, e, func(s *status) { s.State = StateNotReady }); err != nil {
		m.log.Warn("mark pod not ready", "id", id, "error", err)
	}
	m.emit(e, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
}

func (m *Manager) isRemoved(e *entry) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return e.removed
}

// Remove removes a sealed pod whose containers are removed (see Seal),
// releasing whatever it still holds, and deletes everything it has on
// disk. It is idempotent.
func (m *Manager) Remove(ctx context.Context, id string) error {
	return m.withPod(ctx, id, func(id string, e *entry) error { return m.remove(ctx, id, e) })
}

func (m *Manager) remove(ctx context.Context, id string, e *entry) error {
	if err := m.release(ctx, id, e, true); err != nil {
		return err
	}
	m.mu.Lock()
	cgroupDirs, logDirCreated := e.st.CgroupsCreated, e.st.LogDirCreated
	m.mu.Unlock()
	cgroups.RemoveDirs(cgroupDirs)
	if logDirCreated && e.rec.LogDirectory != "" {
		// Only if empty: container logs in it belong to the kubelet.
		_ = os.Remove(e.rec.LogDirectory)
	}
	if err := os.RemoveAll(e.rec.RunDir); err != nil {
		return fmt.Errorf("remove pod %s: %w", id, err)
	}
	if err := m.store.Remove(id); err != nil {
		return fmt.Errorf("remove pod %s: %w", id, err)
	}
	m.mu.Lock()
	e.removed = true
	delete(m.pods, id)
	key := nameKey(e.rec.Metadata)
	if r, ok := m.names[key]; ok && r.id == id {
		delete(m.names, key)
	}
	m.mu.Unlock()
	m.log.Info("pod sandbox removed", "id", id)
	m.emit(e, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT)
	return nil
}
