package container

import (
	"time"

	"github.com/berth-cri/berth/internal/monitor"
)

// load indexes the records a previous berthd left and brings each one up
// to date with what happened while no berthd watched: an exit file means
// the container exited; a live conmon means it still runs; a dead conmon
// without an exit file means the container is reported exited (and
// killed if it still runs). A record of an interrupted creation is
// loaded as exited so that the kubelet removes it, which cleans up
// whatever the creation had made. The full reconciliation of a restart
// (runtime state, storage, pods) is the recovery package's job; this is
// the minimum that keeps running containers running across a restart.
func (m *Manager) load() {
	ids, err := m.records.IDs()
	if err != nil {
		m.log.Error("list container records", "error", err)
		return
	}
	for _, id := range ids {
		var meta Meta
		if err := m.records.Read(id, metaFile, &meta); err != nil {
			m.log.Warn("skipping container record", "id", id, "error", err)
			continue
		}
		var st Status
		if err := m.records.Read(id, statusFile, &st); err != nil {
			st = Status{State: StateCreating}
		}
		c := &container{meta: &meta, op: make(chan struct{}, 1), st: st, exited: make(chan struct{})}
		switch st.State {
		case StateExited:
			close(c.exited)
			c.cleaned = make(chan struct{})
			close(c.cleaned)
		case StateCreating:
			c.st.State = StateExited
			c.st.ExitCode, c.st.Reason = 255, ReasonInterrupted
			c.st.Message = "berthd stopped while creating this container"
			c.st.FinishedAt = time.Now()
			close(c.exited)
		}
		m.mu.Lock()
		m.ctrs[id] = c
		m.names[meta.Name] = &reservation{done: closedChan(), id: id}
		m.mu.Unlock()
		if c.st.State == StateCreated || c.st.State == StateRunning {
			if _, err := monitor.ReadExit(m.records.Path(id)); err == nil {
				m.handleExit(id)
			} else {
				m.checkConmon(c)
			}
		}
	}
}

func closedChan() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}
