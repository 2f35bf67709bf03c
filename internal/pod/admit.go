package pod

import (
	"context"
	"errors"
	"fmt"

	"github.com/berth-cri/berth/internal/errdefs"
)

// The rule that keeps containers out of pods being torn down: a
// container is created only under an admission of its pod, which a ready
// pod that is not sealed grants; a stop or removal first seals the pod
// and waits for the admissions under way to end. So every container that
// a stop or removal must handle is registered before it looks for them,
// and none can appear after.

// Admit lets one container be created in the pod with this id (or unique
// prefix): the pod must be ready and not sealed. The returned snapshot
// is what the container is made from; call done when the creation has
// ended, either way.
func (m *Manager) Admit(idOrPrefix string) (sb *Sandbox, done func(), err error) {
	id, e, err := m.lookup(idOrPrefix)
	if err != nil {
		return nil, nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case e.removed, e.unpublished:
		return nil, nil, fmt.Errorf("pod sandbox %q: %w", idOrPrefix, errdefs.ErrNotFound)
	case e.sealed:
		return nil, nil, fmt.Errorf("pod sandbox %s is being stopped: %w", id, errdefs.ErrFailedPrecondition)
	case e.st.State != StateReady:
		return nil, nil, fmt.Errorf("pod sandbox %s is not ready (%s): %w", id, e.st.State, errdefs.ErrFailedPrecondition)
	}
	e.admitted++
	return snapshot(e), func() { m.endAdmission(e) }, nil
}

// endAdmission ends one admission of e.
func (m *Manager) endAdmission(e *entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e.admitted--
	if e.admitted == 0 && e.drained != nil {
		close(e.drained)
		e.drained = nil
	}
}

// Seal refuses new containers in the pod with this id (or unique prefix)
// from now on and waits, within ctx, for the creations already admitted
// to end. It returns the pod's full id, or "" for a pod that does not
// exist (stopping and removing it succeed). A pod stays sealed: a stopped
// pod takes no containers, and a removed one is gone.
func (m *Manager) Seal(ctx context.Context, idOrPrefix string) (string, error) {
	id, e, err := m.lookup(idOrPrefix)
	if errors.Is(err, errdefs.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	e.sealed = true
	var wait chan struct{}
	if e.admitted > 0 {
		if e.drained == nil {
			e.drained = make(chan struct{})
		}
		wait = e.drained
	}
	m.mu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			return "", fmt.Errorf("pod %s: waiting for container creations to end: %w", id, ctx.Err())
		}
	}
	return id, nil
}
