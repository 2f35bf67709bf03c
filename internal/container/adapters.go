package container

import (
	"slices"

	"github.com/berth-cri/berth/internal/runtime"
	"github.com/berth-cri/berth/internal/stats"
)

// ExecTarget describes a container for exec and attach.
func (m *Manager) ExecTarget(id string) (runtime.ExecTarget, error) {
	c, err := m.get(id)
	if err != nil {
		return runtime.ExecTarget{}, err
	}
	m.checkConmon(c)
	st := c.snapshot()
	p, err := m.Process(c.meta.ID)
	if err != nil {
		return runtime.ExecTarget{}, err
	}
	return runtime.ExecTarget{
		ID:           c.meta.ID,
		Running:      st.State == StateRunning,
		Runtime:      c.meta.Runtime,
		Bundle:       c.meta.Bundle,
		Process:      p,
		AttachSocket: m.mon.AttachSocket(c.meta.ID),
		ControlFIFO:  c.meta.Bundle + "/ctl",
		TTY:          c.meta.Tty,
		Stdin:        c.meta.Stdin,
		StdinOnce:    c.meta.StdinOnce,
	}, nil
}

func (m *Manager) statsTarget(c *container) stats.ContainerTarget {
	st := c.snapshot()
	img := c.meta.Image.Name
	if img == "" {
		img = c.meta.Image.Image
	}
	return stats.ContainerTarget{
		ID: c.meta.ID, PodID: c.meta.PodID, Name: c.meta.CtrName, Attempt: c.meta.Attempt,
		Image: img, Labels: c.meta.Labels, Annotations: c.meta.Annotations, CreatedAt: c.meta.CreatedAt, StartedAt: st.StartedAt,
		CgroupPath: c.meta.CgroupsPath, Running: st.State == StateRunning, StorageID: c.meta.StorageID,
	}
}

// StatsContainers lists every container for the stats collector, oldest
// first, so that every stats list (unary or streamed) has one order.
func (m *Manager) StatsContainers() []stats.ContainerTarget {
	m.mu.RLock()
	all := make([]*container, 0, len(m.ctrs))
	for _, c := range m.ctrs {
		all = append(all, c)
	}
	m.mu.RUnlock()
	out := make([]stats.ContainerTarget, 0, len(all))
	for _, c := range all {
		out = append(out, m.statsTarget(c))
	}
	slices.SortFunc(out, func(a, b stats.ContainerTarget) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out
}

// StatsContainer describes one container for the stats collector.
func (m *Manager) StatsContainer(idOrPrefix string) (stats.ContainerTarget, error) {
	c, err := m.get(idOrPrefix)
	if err != nil {
		return stats.ContainerTarget{}, err
	}
	return m.statsTarget(c), nil
}
