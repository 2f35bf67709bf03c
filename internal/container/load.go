package container

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/internal/oplock"
	"github.com/berth-cri/berth/internal/runtime"
	"github.com/berth-cri/berth/internal/store"
)

// ReasonRebooted is the reason of a container that was running when the
// node rebooted.
const ReasonRebooted = "NodeRebooted"

// LoadReport counts what loading the records found; recovery logs it.
type LoadReport struct {
	Running, Created, Exited int
	// ExitedWhileDown exited while no berthd watched (exit file found, or
	// conmon gone, or the node rebooted).
	ExitedWhileDown int
	// Completed were caught mid-creation with runc's container made: the
	// creation is finished and a retry of the request gets them.
	Completed int
	// Discarded were caught mid-creation before that, or had no readable
	// record: removed with everything they had made.
	Discarded int
	// FromPrev records were torn and read from their previous copy.
	FromPrev int
}

// load indexes the records a previous berthd left and settles each one
// against what happened while no berthd watched: conmon's exit file in
// the persist dir means the container exited (with that code, at the
// file's ctime); a live conmon (pid + start time) means it still runs,
// and runc's state tells whether a start happened before the crash; a
// dead conmon without an exit file means it is reported exited with a
// message saying so (and killed if it still runs). A record cut short by
// a crash mid-creation is completed when runc's container exists under a
// live conmon, else removed with its writable layer, bundle and conmon.
// After a reboot nothing runs: every container is reported exited.
func (m *Manager) load(rebooted bool) LoadReport {
	var rep LoadReport
	ids, err := m.records.IDs()
	if err != nil {
		m.log.Error("list container records", "error", err)
		return rep
	}
	var conmons map[string]runtime.Proc
	scan := func() map[string]runtime.Proc {
		if conmons == nil {
			conmons = m.mon.Conmons()
		}
		return conmons
	}
	for _, id := range ids {
		var meta Meta
		prev, err := m.records.ReadCheck(id, metaFile, &meta)
		if err != nil {
			// Without container.json nothing says what the container was;
			// it was never reported to anyone (it is written before conmon
			// runs) or it is unrecoverable: remove what it left.
			m.log.Warn("discarding container without a readable record", "id", id, "error", err)
			m.discard(id, nil, scan()[id], false)
			rep.Discarded++
			continue
		}
		if prev {
			rep.FromPrev++
			m.log.Warn("container record was torn; using its previous copy", "id", id, "file", metaFile)
		}
		// Taken before anything else so that a container discarded below
		// releases its images as a removal would.
		m.adoptImageVolumes(&meta)
		var st Status
		sprev, serr := m.records.ReadCheck(id, statusFile, &st)
		if sprev {
			rep.FromPrev++
			m.log.Warn("container status was torn; using its previous copy", "id", id)
		}
		completed := false
		switch {
		case serr == nil && st.Removing:
			m.log.Info("finishing removal of container", "id", id, "name", meta.Name)
			m.discard(id, &meta, scan()[id], false)
			rep.Discarded++
			continue
		case serr == nil && st.State != StateCreating:
		case rebooted:
			m.discard(id, &meta, runtime.Proc{}, true)
			rep.Discarded++
			continue
		case !store.IsCorrupt(serr):
			// Creation was cut short: the client never got this id. Even
			// if conmon went on to create the container, it dies on
			// the sync pipe whose reader is gone, so nothing here can
			// be completed safely; the kubelet's retry makes it anew.
			m.log.Info("removing container whose creation was interrupted", "id", id, "name", meta.Name)
			m.discard(id, &meta, scan()[id], true)
			rep.Discarded++
			continue
		default:
			// The status record is unreadable: rebuild it from conmon,
			// its exit file and the runtime.
			rebuilt, ok := m.rebuild(&meta, scan()[id], true)
			if !ok {
				m.log.Info("removing container whose status cannot be rebuilt", "id", id, "name", meta.Name)
				m.discard(id, &meta, scan()[id], false)
				rep.Discarded++
				continue
			}
			st = rebuilt
			rep.Completed++
			completed = true
			m.log.Info("rebuilt container status", "id", id, "state", st.State)
		}
		c := &container{meta: &meta, op: oplock.New(), st: st, exited: make(chan struct{})}
		changed := completed
		live := st.State == StateCreated || st.State == StateRunning
		if live && rebooted {
			c.st.State = StateExited
			c.st.ExitCode, c.st.Reason = 255, ReasonRebooted
			c.st.Message = "the node rebooted while the container was " + string(st.State)
			c.st.FinishedAt = bootTime()
			live = false
			changed = true
			rep.ExitedWhileDown++
		}
		if !live {
			close(c.exited)
			c.cleaned = make(chan struct{})
			close(c.cleaned)
		}
		m.exits.Claim(id)
		m.mu.Lock()
		m.ctrs[id] = c
		// A retry of the CreateContainer whose answer the crash lost gets
		// this container (once); the kubelet never repeats a create it
		// got an answer for, since each attempt has its own name.
		m.names[meta.Name] = &reservation{done: closedChan(), id: id, unclaimed: live}
		m.mu.Unlock()
		if !live {
			if changed {
				m.persistLogged(c)
			}
			rep.Exited++
			continue
		}
		if _, err := runtime.ReadExit(m.records.Path(id)); err == nil {
			m.handleExit(id)
			rep.ExitedWhileDown++
			continue
		}
		if !st.Conmon.Alive() {
			m.checkConmon(c)
			rep.ExitedWhileDown++
			continue
		}
		if st.State == StateCreated && m.startedMeanwhile(c) {
			changed = true
		}
		if changed {
			m.persistLogged(c)
		}
		if c.snapshot().State == StateRunning {
			rep.Running++
		} else {
			rep.Created++
		}
	}
	return rep
}

// startedMeanwhile notices a start that runc performed but whose "running"
// status the crash kept from disk.
func (m *Manager) startedMeanwhile(c *container) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs, err := m.oci(c.meta.Runtime).State(ctx, c.meta.ID)
	if err != nil || rs.Status != "running" {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st.State, c.st.StartedAt = StateRunning, time.Now()
	return true
}

// rebuild makes the status of a container whose status.json is missing
// (a creation cut short) or unreadable, from conmon's exit file, a live
// conmon and runc's state. It reports false when there is nothing to
// keep: then the container never got further than its record.
func (m *Manager) rebuild(meta *Meta, conmon runtime.Proc, known bool) (Status, bool) {
	st := Status{Version: recordVersion, Conmon: conmon}
	if ex, err := runtime.ReadExit(m.records.Path(meta.ID)); err == nil && known {
		st.State, st.ExitCode, st.FinishedAt = StateExited, ex.Code, ex.At
		st.Reason = ReasonError
		if ex.Code == 0 {
			st.Reason = ReasonCompleted
		}
		return st, true
	}
	if !conmon.Alive() {
		if known {
			st.State, st.ExitCode, st.FinishedAt, st.Reason = StateExited, 255, time.Now(), ReasonConmonDied
			st.Message = "status record was unreadable and conmon is gone; exit code unknown"
			return st, true
		}
		return st, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs, err := m.oci(meta.Runtime).State(ctx, meta.ID)
	if err != nil || (rs.Status != "created" && rs.Status != "running") {
		return st, false
	}
	init, err := runtime.NewProc(rs.Pid)
	if err != nil {
		return st, false
	}
	st.Init = init
	st.State = StateCreated
	if rs.Status == "running" {
		st.State, st.StartedAt = StateRunning, time.Now()
	}
	return st, true
}

// discard removes container id and everything it may have made: runc's
// container (killed), conmon, conmon's cgroup, the writable layer, the
// bundle, the attach link, the exit notification and the record. meta
// may be nil (unreadable record): the default runtime and the id as
// storage id are used then. removeLog also removes the log file, which
// only a creation that never answered may do.
func (m *Manager) discard(id string, meta *Meta, conmon runtime.Proc, removeLog bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log := m.log.With("id", id)
	rt, storageID, bundle := m.defaultRuntime(), id, filepath.Join(m.runDir, id)
	var cg *cgroups.Cgroup
	if meta != nil {
		rt, storageID, cg = meta.Runtime, meta.StorageID, meta.ConmonCgroup
		if meta.Bundle != "" {
			bundle = meta.Bundle
		}
	}
	if err := m.oci(rt).Delete(ctx, id, true); err != nil {
		log.Warn("discard: runtime delete", "error", err)
	}
	if conmon.Alive() {
		_ = conmon.Signal(9)
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		_ = conmon.WaitExit(wctx)
		wcancel()
	}
	if err := cg.Remove(time.Second); err != nil {
		log.Warn("discard: conmon cgroup", "error", err)
	}
	if err := m.releaseIDMapped(id); err != nil {
		log.Warn("discard: idmapped mounts", "error", err)
	}
	if storageID != "" {
		if err := m.removeLayer(storageID); err != nil {
			log.Warn("discard: writable layer", "error", err)
		}
	}
	if err := m.images.ReleaseImages(id); err != nil {
		log.Warn("discard: image volumes", "error", err)
	}
	if err := os.RemoveAll(bundle); err != nil {
		log.Warn("discard: bundle", "error", err)
	}
	if removeLog && meta != nil && meta.LogPath != "" {
		_ = os.Remove(meta.LogPath)
	}
	m.mon.RemoveAttachLink(id)
	m.mon.ClearExit(id)
	if err := m.records.Remove(id); err != nil {
		log.Warn("discard: record", "error", err)
	}
}

// bootTime is when the node booted, the best finish time of a container
// that a reboot ended.
func bootTime() time.Time {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Now()
	}
	var sec int64
	for _, line := range strings.Split(string(data), "\n") {
		if _, err := fmt.Sscanf(line, "btime %d", &sec); err == nil {
			return time.Unix(sec, 0)
		}
	}
	return time.Now()
}

func closedChan() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}
