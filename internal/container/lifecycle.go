package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"go.podman.io/storage"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// exitGrace is how long a stop waits, once the container's process is
// gone, for conmon's exit file before checking whether conmon died.
const exitGrace = 2 * time.Second

// Start runs the container's process.
func (m *Manager) Start(ctx context.Context, id string) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	if err := c.lockOp(ctx); err != nil {
		return err
	}
	defer c.op.Unlock()
	c.mu.Lock()
	if c.removed {
		c.mu.Unlock()
		return fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	if c.st.State != StateCreated {
		state := c.st.State
		c.mu.Unlock()
		return fmt.Errorf("container %s is %s, not created: %w", c.meta.ID, state, errdefs.ErrFailedPrecondition)
	}
	c.starting = true
	c.mu.Unlock()

	err = m.oci(c.meta.Runtime).Start(ctx, c.meta.ID)
	if err != nil {
		// A start interrupted by the client may still have happened.
		if st, serr := m.oci(c.meta.Runtime).State(context.WithoutCancel(ctx), c.meta.ID); serr == nil && (st.Status == "running" || st.Status == "stopped") {
			err = nil
		}
	}
	c.mu.Lock()
	c.starting = false
	pending := c.pendingExit
	c.pendingExit = false
	if err == nil {
		c.st.State = StateRunning
		c.st.StartedAt = time.Now()
	}
	init := c.st.Init
	c.mu.Unlock()
	if err == nil {
		// Running is reported only once it is on disk; a failed write
		// fails the start, and the container is ended below.
		if err = m.persist(c); err != nil {
			c.mu.Lock()
			c.st.State, c.st.StartedAt = StateCreated, time.Time{}
			c.mu.Unlock()
		}
	}
	if err != nil {
		// The init is still waiting to exec (or gone, or must go): end it
		// so conmon reports the container exited.
		_ = init.Signal(unix.SIGKILL)
		if pending {
			m.handleExit(c.meta.ID)
		}
		return fmt.Errorf("start container %s: %w", c.meta.ID, err)
	}
	m.events.Publish(m.event(c, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT))
	if pending {
		m.handleExit(c.meta.ID)
	}
	return nil
}

// Remove deletes the container, stopping it first if it runs. Removing
// an unknown container is not an error.
func (m *Manager) Remove(ctx context.Context, id string) error {
	c, err := m.get(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := m.stop(ctx, c, 0); err != nil {
		return err
	}
	if err := c.lockOp(ctx); err != nil {
		return err
	}
	defer c.op.Unlock()
	c.mu.Lock()
	if c.removed {
		c.mu.Unlock()
		return nil
	}
	c.removed = true
	c.st.Removing = true
	cleaned := c.cleaned
	c.mu.Unlock()
	err = m.persist(c)
	if err == nil {
		err = m.remove(ctx, c, cleaned)
	}
	if err != nil {
		c.mu.Lock()
		c.removed, c.st.Removing = false, false
		c.mu.Unlock()
		return err
	}
	if m.oom != nil {
		m.oom.ContainerRemoved(c.meta.Name)
	}
	return nil
}

func (m *Manager) remove(ctx context.Context, c *container, cleaned chan struct{}) error {
	id := c.meta.ID
	// Idmapped mounts first: they hold the writable layer's dirs, and
	// the container's own mount namespace keeps its copies until it ends.
	if err := m.releaseIDMapped(id); err != nil {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	// The writable layer is removed while the runtime state is deleted:
	// neither needs the other.
	layerErr := make(chan error, 1)
	go func() { layerErr <- m.removeLayer(c.meta.StorageID) }()
	var err error
	if cleaned != nil {
		select {
		case <-cleaned:
		case <-ctx.Done():
			err = fmt.Errorf("remove container %s: %w", id, ctx.Err())
		}
	} else if derr := m.oci(c.meta.Runtime).Delete(ctx, id, true); derr != nil {
		err = fmt.Errorf("remove container %s: %w", id, derr)
	}
	if lerr := <-layerErr; lerr != nil {
		err = errors.Join(err, fmt.Errorf("remove container %s: %w", id, lerr))
	}
	if err != nil {
		return err
	}
	// The images mounted as volumes are released once the container's
	// process and mounts are gone; the last user unmounts them.
	if err := m.images.ReleaseImages(id); err != nil {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	if err := os.RemoveAll(c.meta.Bundle); err != nil {
		m.log.Warn("remove bundle", "id", id, "error", err)
	}
	m.mon.RemoveAttachLink(id)
	m.mon.ClearExit(id)
	if err := m.records.Remove(id); err != nil {
		return err
	}
	m.exits.Release(id)
	m.mu.Lock()
	delete(m.ctrs, id)
	if r, ok := m.names[c.meta.Name]; ok && r.id == id {
		delete(m.names, c.meta.Name)
	}
	m.mu.Unlock()
	m.events.Publish(m.event(c, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT))
	return nil
}

// removeLayer unmounts and deletes a storage container; one that is
// already gone is not an error.
func (m *Manager) removeLayer(storageID string) error {
	store, err := m.layers()
	if err != nil {
		return err
	}
	gone := func(err error) bool {
		return errors.Is(err, storage.ErrContainerUnknown) || errors.Is(err, storage.ErrLayerUnknown) || errors.Is(err, storage.ErrNotAContainer)
	}
	if _, err := store.Unmount(storageID, true); err != nil && !gone(err) {
		return fmt.Errorf("unmount writable layer: %w", err)
	}
	if err := store.DeleteContainer(storageID); err != nil && !gone(err) {
		return fmt.Errorf("delete writable layer: %w", err)
	}
	return nil
}

// podContainers lists the containers of a pod.
func (m *Manager) podContainers(podID string) []*container {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []*container
	for _, c := range m.ctrs {
		if c.meta.PodID == podID {
			out = append(out, c)
		}
	}
	return out
}

// StopPodContainers stops every container of a pod, in parallel, each
// with the pod's termination grace period when the kubelet recorded one
// in its annotations (10 s otherwise).
func (m *Manager) StopPodContainers(ctx context.Context, podID string) error {
	return m.eachPodContainer(podID, func(c *container) error {
		grace := int64(10)
		if v, err := strconv.ParseInt(c.meta.Annotations["io.kubernetes.pod.terminationGracePeriod"], 10, 64); err == nil && v >= 0 {
			grace = v
		}
		return m.stop(ctx, c, grace)
	})
}

// RemovePodContainers removes every container of a pod.
func (m *Manager) RemovePodContainers(ctx context.Context, podID string) error {
	return m.eachPodContainer(podID, func(c *container) error { return m.Remove(ctx, c.meta.ID) })
}

func (m *Manager) eachPodContainer(podID string, f func(*container) error) error {
	ctrs := m.podContainers(podID)
	errs := make([]error, len(ctrs))
	var wg sync.WaitGroup
	for i, c := range ctrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(c)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
