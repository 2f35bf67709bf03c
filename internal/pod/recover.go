package pod

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/berth-cri/berth/internal/nsmgr"
)

// RecoverReport counts what settling the pod records found.
type RecoverReport struct {
	Ready, NotReady int
	// Lost were ready but their pinned namespaces (or PID holder) are
	// gone, after a reboot or behind berth's back: now not ready.
	Lost int
	// Discarded were cut short mid-creation (never reported ready) or
	// had no readable record: removed with what they had made.
	Discarded int
	FromPrev  int
}

// SweepReport counts the orphans a pod sweep removed.
type SweepReport struct {
	NSPins, RunDirs, CNI int
}

// Total is the number of orphans removed.
func (r SweepReport) Total() int { return r.NSPins + r.RunDirs + r.CNI }

// loadRecords indexes the pod records on disk. Records of pods caught
// mid-creation, or unreadable, are kept aside for Recover to remove.
func (m *Manager) loadRecords() {
	ids, err := m.store.IDs()
	if err != nil {
		m.log.Warn("list pod records", "error", err)
		return
	}
	for _, id := range ids {
		var rec record
		var st status
		prev, err := m.store.ReadCheck(id, "pod.json", &rec)
		if err != nil {
			m.log.Warn("pod record unreadable; it will be removed", "id", id, "error", err)
			m.broken = append(m.broken, brokenPod{id: id})
			continue
		}
		sprev, serr := m.store.ReadCheck(id, "status.json", &st)
		if prev || sprev {
			m.fromPrev++
			m.log.Warn("pod record was torn; using its previous copy", "id", id)
		}
		if serr != nil || st.State == StateCreating {
			m.broken = append(m.broken, brokenPod{id: id, rec: &rec})
			continue
		}
		m.pods[id] = newEntry(&rec, st)
		if st.Holder != nil && m.exits != nil {
			m.exits.Claim(id)
		}
		m.names[nameKey(rec.Metadata)] = &reservation{done: closedChan(), id: id}
	}
}

// brokenPod is a record loadRecords could not index.
type brokenPod struct {
	id  string
	rec *record // nil if pod.json is unreadable
}

// Recover settles the loaded pods before berthd serves: a pod caught
// mid-creation is removed with its holder, CNI attachment, /dev/shm and
// pinned namespaces (the kubelet was never told of it, and its retry
// must find the name free); a ready pod whose pinned namespaces are gone
// (rebooted, or unmounted behind berth's back) or whose PID holder died
// is released and reported not ready, so the kubelet recreates it.
func (m *Manager) Recover(ctx context.Context, rebooted bool) RecoverReport {
	rep := RecoverReport{FromPrev: m.fromPrev}
	for _, b := range m.broken {
		if b.rec != nil {
			m.log.Info("removing pod whose creation was interrupted", "id", b.id, "name", b.rec.Metadata.Name)
			m.undoCreation(ctx, b.rec)
		}
		if err := m.store.Remove(b.id); err != nil {
			m.log.Warn("remove pod record", "id", b.id, "error", err)
		}
		rep.Discarded++
	}
	m.broken = nil
	m.mu.Lock()
	entries := make(map[string]*entry, len(m.pods))
	for id, e := range m.pods {
		entries[id] = e
	}
	m.mu.Unlock()
	for id, e := range entries {
		m.mu.Lock()
		st := e.st
		m.mu.Unlock()
		if st.State != StateReady {
			// A stop cut short by the crash: finish it now, while the
			// netns still exists for a proper CNI DEL.
			if st.Network != "" || st.Holder != nil || m.anyPinned(e.rec) {
				m.log.Info("finishing interrupted stop of pod", "id", id)
				if err := m.release(ctx, id, e, true); err != nil {
					m.log.Warn("finish stopping pod", "id", id, "error", err)
				}
			}
			rep.NotReady++
			continue
		}
		why := ""
		switch {
		case rebooted:
			why = "the node rebooted"
		case !m.pinsIntact(e.rec):
			why = "its pinned namespaces are gone"
		case st.Holder != nil && !m.holderAlive(ctx, e.rec, st.Holder):
			why = "its PID namespace holder is gone"
		}
		if why == "" {
			rep.Ready++
			continue
		}
		m.log.Warn("pod sandbox is no longer ready", "id", id, "reason", why)
		if err := m.release(ctx, id, e, true); err != nil {
			m.log.Warn("release lost pod", "id", id, "error", err)
		}
		rep.Lost++
	}
	return rep
}

// anyPinned reports whether any of the pod's namespace pins still exists.
func (m *Manager) anyPinned(rec *record) bool {
	for _, p := range []string{rec.NSPaths.Net, rec.NSPaths.IPC, rec.NSPaths.UTS, rec.NSPaths.User} {
		if p != "" && m.ns.IsPinned(p) {
			return true
		}
	}
	return false
}

func (m *Manager) pinsIntact(rec *record) bool {
	for _, p := range []string{rec.NSPaths.Net, rec.NSPaths.IPC, rec.NSPaths.UTS, rec.NSPaths.User} {
		if p != "" && !m.ns.IsPinned(p) {
			return false
		}
	}
	return true
}

func (m *Manager) holderAlive(ctx context.Context, rec *record, h *Holder) bool {
	rt, err := m.holders.runtime(rec.RuntimeHandler)
	if err != nil {
		return false
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := m.holders.oci(rt).State(sctx, h.ContainerID)
	return err == nil && st.Status == "running"
}

// undoCreation removes what a creation cut short may have made, in the
// reverse order of the pipeline; every step tolerates what is missing.
func (m *Manager) undoCreation(ctx context.Context, rec *record) {
	log := m.log.With("id", rec.ID)
	ho := &Holder{ContainerID: rec.ID, BundleDir: filepath.Join(rec.RunDir, "holder")}
	if err := m.holders.remove(ctx, rec.RuntimeHandler, ho); err != nil {
		log.Debug("undo: holder", "error", err)
	}
	if rec.Namespaces.Network == ModePod {
		// The network name is unknown (status.json was not written):
		// DEL against the current config; host-local releases by id.
		if err := m.net.Teardown(ctx, m.attachment(rec), ""); err != nil {
			log.Warn("undo: CNI DEL", "error", err)
		}
	}
	if err := unmountShm(rec.ShmPath); err != nil {
		log.Warn("undo: shm", "error", err)
	}
	if err := m.ns.Unpin(rec.NSPaths); err != nil {
		log.Warn("undo: namespaces", "error", err)
	}
	if rec.RunDir != "" {
		_ = os.RemoveAll(rec.RunDir)
	}
}

// cniCacheName matches libcni's cached results: <network>-<id>-<ifname>.
var cniCacheName = regexp.MustCompile(`^(.+)-([0-9a-f]{64})-([^-]+)$`)

// Sweep removes what belongs to berth's pods but to no pod record:
// namespace pins, pod run dirs (with a /dev/shm mount and a holder), and
// CNI attachments (DEL from libcni's cache, which also frees the IP).
func (m *Manager) Sweep(ctx context.Context) SweepReport {
	var rep SweepReport
	m.mu.Lock()
	pinned := map[string]bool{}
	attached := map[string]bool{}
	known := map[string]bool{}
	for id, e := range m.pods {
		known[id] = true
		// Any recorded pod owns its pins: a not-ready pod whose stop was
		// cut short still has them, and its retried stop or remove
		// releases them along with its network.
		for _, p := range []string{e.rec.NSPaths.Net, e.rec.NSPaths.IPC, e.rec.NSPaths.UTS, e.rec.NSPaths.User} {
			pinned[p] = true
		}
		if e.st.Network != "" {
			attached[id] = true
		}
	}
	m.mu.Unlock()
	for _, kind := range []string{nsmgr.Net, nsmgr.IPC, nsmgr.UTS, nsmgr.User} {
		ents, _ := os.ReadDir(filepath.Dir(m.ns.Path(kind, "x")))
		for _, e := range ents {
			p := m.ns.Path(kind, e.Name())
			if pinned[p] {
				continue
			}
			if err := m.ns.Unpin(nsmgr.Paths{Net: p}); err != nil {
				m.log.Warn("sweep: namespace pin", "path", p, "error", err)
				continue
			}
			m.log.Info("sweep: namespace pin of no pod", "path", p)
			rep.NSPins++
		}
	}
	if ents, err := os.ReadDir(m.runDir); err == nil {
		for _, e := range ents {
			if known[e.Name()] {
				continue
			}
			dir := filepath.Join(m.runDir, e.Name())
			m.log.Info("sweep: run dir of no pod", "id", e.Name())
			m.undoCreation(ctx, &record{ID: e.Name(), RunDir: dir, ShmPath: filepath.Join(dir, "shm")})
			rep.RunDirs++
		}
	}
	rep.CNI = m.sweepCNI(ctx, attached)
	return rep
}

// sweepCNI runs CNI DEL for attachments cached by libcni for pods that
// no longer are attached (or exist).
func (m *Manager) sweepCNI(ctx context.Context, attached map[string]bool) int {
	ents, err := os.ReadDir(filepath.Join(m.cniCacheDir, "results"))
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		sm := cniCacheName.FindStringSubmatch(e.Name())
		if sm == nil || attached[sm[2]] {
			continue
		}
		id, network := sm[2], sm[1]
		m.log.Info("sweep: CNI attachment of no pod", "id", id, "network", network)
		if err := m.net.Teardown(ctx, m.attachment(&record{ID: id}), network); err != nil {
			m.log.Warn("sweep: CNI DEL", "id", id, "error", err)
			continue
		}
		n++
	}
	return n
}

// IDs lists the pods in the index (their PID holders run under conmon
// with the pod's id).
func (m *Manager) IDs() map[string]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]bool, len(m.pods))
	for id := range m.pods {
		out[id] = true
	}
	return out
}
