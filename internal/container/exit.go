package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/internal/runtime"
)

// handleExit records the exit conmon reported for id (an exit-dir event,
// or a rescan).
func (m *Manager) handleExit(id string) {
	m.mu.RLock()
	c := m.ctrs[id]
	m.mu.RUnlock()
	if c == nil {
		// A container whose creation failed or is still under way: its
		// creator reads the persist dir itself.
		m.mon.ClearExit(id)
		return
	}
	recDir := m.records.Path(id)
	ex, err := runtime.ReadExit(recDir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			m.log.Error("read exit file", "id", id, "error", err)
		}
		return
	}
	// On cgroup v1 conmon learns of an OOM through an eventfd and may
	// write the exit file first, so a 137 is double-checked.
	oom := ex.OOMKilled || (ex.Code == 137 && !c.meta.Runtime.SystemdCgroup && cgroups.OOMKilled(c.meta.CgroupsPath))
	reason := ReasonError
	switch {
	case oom:
		reason = ReasonOOMKilled
	case ex.Code == 0:
		reason = ReasonCompleted
	}
	m.finishExit(c, ex.Code, ex.At, reason, "")
}

// finishExit moves c to exited, persists and announces it, and starts
// cleaning up the runtime state in the background.
func (m *Manager) finishExit(c *container, code int32, at time.Time, reason, message string) {
	c.mu.Lock()
	if c.st.State == StateExited || c.removed {
		c.mu.Unlock()
		return
	}
	if c.starting {
		c.pendingExit = true
		c.mu.Unlock()
		return
	}
	c.st.State = StateExited
	c.st.ExitCode, c.st.FinishedAt, c.st.Reason, c.st.Message = code, at, reason, message
	// Counted here, where the exit is recorded once, not per notice of
	// it (an exit seen during a start is handled again after it).
	if reason == ReasonOOMKilled && m.oom != nil {
		m.oom.ContainerOOM(c.meta.Name)
	}
	close(c.exited)
	c.cleaned = make(chan struct{})
	st, cleaned := c.st, c.cleaned
	c.mu.Unlock()
	m.persistLogged(c)
	m.mon.ClearExit(c.meta.ID)
	m.events.Publish(m.event(c, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT))
	m.log.Debug("container exited", "id", c.meta.ID, "code", code, "reason", reason)
	m.goBackground(func() {
		defer close(cleaned)
		m.cleanupExited(c, st)
	})
}

// cleanupExited deletes the runtime's state and conmon's cgroup of an
// exited container right away, so that RemoveContainer finds it done.
func (m *Manager) cleanupExited(c *container, st Status) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.oci(c.meta.Runtime).Delete(ctx, c.meta.ID, true); err != nil {
		m.log.Warn("runtime delete of exited container", "id", c.meta.ID, "error", err)
	}
	if c.meta.ConmonCgroup != nil {
		// conmon exits right after writing the exit file.
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		_ = st.Conmon.WaitExit(wctx)
		wcancel()
		if err := c.meta.ConmonCgroup.Remove(time.Second); err != nil {
			m.log.Warn("remove conmon cgroup", "id", c.meta.ID, "error", err)
		}
	}
}

// checkConmon notices a conmon that died without writing an exit file.
// The container is then killed (without conmon its output and exit go
// nowhere) and reported exited, with a reason saying why.
func (m *Manager) checkConmon(c *container) {
	st := c.snapshot()
	if st.State != StateRunning && st.State != StateCreated {
		return
	}
	if st.Conmon.Alive() {
		return
	}
	if _, err := runtime.ReadExit(m.records.Path(c.meta.ID)); err == nil {
		m.handleExit(c.meta.ID)
		return
	}
	code := int32(255)
	msg := fmt.Sprintf("conmon (pid %d) exited without reporting the container's exit", st.Conmon.PID)
	if st.Init.Alive() {
		_ = st.Init.Signal(unix.SIGKILL)
		code = 137
		msg += "; the container was killed"
	}
	m.log.Warn("container monitor died", "id", c.meta.ID, "conmon", st.Conmon.PID)
	m.finishExit(c, code, time.Now(), ReasonConmonDied, msg)
}

// conmonExited is the reaper's report that container id's conmon is gone.
func (m *Manager) conmonExited(id string) {
	m.mu.RLock()
	c := m.ctrs[id]
	m.mu.RUnlock()
	if c != nil {
		m.checkConmon(c)
	}
}
