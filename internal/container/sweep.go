package container

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/berth-cri/berth/internal/runtime"
)

// SweepReport counts the orphans a sweep removed.
type SweepReport struct {
	Conmons, Bundles, RuntimeStates, StorageContainers, Cgroups int
	// IDMapped counts containers whose idmapped mounts were released.
	IDMapped int
}

// Total is the number of orphans removed.
func (r SweepReport) Total() int {
	return r.Conmons + r.Bundles + r.RuntimeStates + r.StorageContainers + r.Cgroups + r.IDMapped
}

// defaultRuntime is the runtime of the default handler, used for what
// has no record naming its own.
func (m *Manager) defaultRuntime() runtime.OCI {
	conf := m.cfg()
	_, h, err := conf.Handler("")
	if err != nil {
		return runtime.OCI{Path: "runc"}
	}
	return runtime.ForHandler(conf, h)
}

// Sweep removes what belongs to berth's containers but to no container
// record: conmon processes (by their --exit-dir), bundles, runtime
// containers whose bundle is under berth's run dir, writable layers that
// berth made (their storage metadata names a pod), and conmon cgroups.
// keep tells ids that are not containers but still in use (pods'
// PID-namespace holders run under conmon too). It is run at start-up
// after an unclean shutdown, and costs a /proc scan, a runc list per
// handler, a storage listing and a cgroup walk.
func (m *Manager) Sweep(ctx context.Context, keep func(id string) bool) SweepReport {
	var rep SweepReport
	m.mu.RLock()
	known := make(map[string]bool, len(m.ctrs))
	for id := range m.ctrs {
		known[id] = true
	}
	m.mu.RUnlock()
	orphan := func(id string) bool { return !known[id] && !keep(id) }
	conmons := m.mon.Conmons()
	gone := map[string]bool{}
	drop := func(id string) {
		if !gone[id] {
			gone[id] = true
			m.discard(id, nil, conmons[id], false)
		}
	}
	for id := range conmons {
		if orphan(id) {
			m.log.Info("sweep: conmon of no container", "id", id, "pid", conmons[id].PID)
			drop(id)
			rep.Conmons++
		}
	}
	if ents, err := os.ReadDir(m.runDir); err == nil {
		for _, e := range ents {
			if orphan(e.Name()) {
				m.log.Info("sweep: bundle of no container", "id", e.Name())
				drop(e.Name())
				rep.Bundles++
			}
		}
	}
	for _, rt := range runtime.Configured(m.cfg()) {
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		list, err := m.oci(rt).List(lctx)
		cancel()
		if err != nil {
			m.log.Warn("sweep: runtime list", "runtime", rt.Path, "error", err)
			continue
		}
		for _, s := range list {
			if strings.HasPrefix(s.Bundle, m.runDir+"/") && orphan(s.ID) && !gone[s.ID] {
				m.log.Info("sweep: runtime container of no record", "id", s.ID, "status", s.Status)
				dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				_ = m.oci(rt).Delete(dctx, s.ID, true)
				cancel()
				drop(s.ID)
				rep.RuntimeStates++
			}
		}
	}
	rep.IDMapped = m.sweepIDMapped(orphan)
	rep.StorageContainers = m.sweepStorage(orphan, gone)
	for id, rel := range m.hier.ConmonCgroups() {
		if orphan(id) {
			if err := m.hier.For(rel).Remove(time.Second); err != nil {
				m.log.Warn("sweep: conmon cgroup", "id", id, "error", err)
				continue
			}
			rep.Cgroups++
		}
	}
	return rep
}

// sweepStorage deletes the writable layers berth made for containers
// that have no record.
func (m *Manager) sweepStorage(orphan func(string) bool, gone map[string]bool) int {
	st, err := m.layers()
	if err != nil {
		m.log.Warn("sweep: open storage", "error", err)
		return 0
	}
	ctrs, err := st.Containers()
	if err != nil {
		m.log.Warn("sweep: list storage containers", "error", err)
		return 0
	}
	n := 0
	for _, c := range ctrs {
		var md map[string]string
		if json.Unmarshal([]byte(c.Metadata), &md) != nil || md["pod-id"] == "" || !orphan(c.ID) {
			continue
		}
		if gone[c.ID] {
			n++ // discard already deleted it
			continue
		}
		m.log.Info("sweep: writable layer of no container", "id", c.ID)
		if err := m.removeLayer(c.ID); err != nil {
			m.log.Warn("sweep: writable layer", "id", c.ID, "error", err)
			continue
		}
		n++
	}
	return n
}

// RunDir is where bundles live; exported for the wipe command.
func (m *Manager) RunDir() string { return filepath.Clean(m.runDir) }
