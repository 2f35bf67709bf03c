package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Cgroup is a cgroupfs cgroup for one conmon, present in every mounted
// hierarchy (v1) or in the unified one (v2). conmon has no cgroup option
// of its own: berth moves it during the start-pipe window, before it
// forks runc, so conmon and nothing else of berth's lands there.
type Cgroup struct {
	// Dirs are the cgroup directories, one per hierarchy.
	Dirs []string `json:"dirs"`
}

// Hierarchies are the cgroupfs mount points berth places conmon in.
type Hierarchies struct {
	mounts []string
}

// ProbeHierarchies finds the mounted cgroup hierarchies. cpuset is left
// out on v1: a new cpuset cgroup starts with no cpus and refuses tasks
// until they are copied from its parent, and conmon needs no cpuset.
func ProbeHierarchies() (*Hierarchies, error) {
	mounts, err := Mounts()
	if err != nil {
		return nil, err
	}
	h := &Hierarchies{}
	var unified string
	for _, m := range mounts {
		switch {
		case m.Unified:
			unified = m.Dir
		case !m.Has("cpuset"):
			h.mounts = append(h.mounts, m.Dir)
		}
	}
	if len(h.mounts) == 0 && unified != "" {
		h.mounts = []string{unified}
	}
	return h, nil
}

// For returns the cgroup at path rel (e.g. "/kubepods/pod1/berth-conmon-ID")
// in every hierarchy.
func (h *Hierarchies) For(rel string) *Cgroup {
	if h == nil || len(h.mounts) == 0 {
		return nil
	}
	rel = filepath.Clean("/" + rel)
	c := &Cgroup{}
	for _, m := range h.mounts {
		c.Dirs = append(c.Dirs, filepath.Join(m, rel))
	}
	return c
}

// Enter creates the cgroup and moves pid into it.
func (c *Cgroup) Enter(pid int) error {
	p := []byte(strconv.Itoa(pid))
	for _, d := range c.Dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create cgroup %s: %w", d, err)
		}
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), p, 0); err != nil {
			return fmt.Errorf("move %d to cgroup %s: %w", pid, d, err)
		}
	}
	return nil
}

// Remove deletes the cgroup; it waits up to wait for conmon, which writes
// the exit files just before it exits, to leave it.
func (c *Cgroup) Remove(wait time.Duration) error {
	if c == nil {
		return nil
	}
	deadline := time.Now().Add(wait)
	var errs []error
	for _, d := range c.Dirs {
		for {
			err := unix.Rmdir(d)
			if err == nil || errors.Is(err, fs.ErrNotExist) {
				break
			}
			if errors.Is(err, unix.EBUSY) && time.Now().Before(deadline) {
				time.Sleep(2 * time.Millisecond)
				continue
			}
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
			break
		}
	}
	return errors.Join(errs...)
}

// conmonCgroupPrefix names the cgroups berth makes for conmon.
const conmonCgroupPrefix = "berth-conmon-"

// ConmonCgroups finds the conmon cgroups berth made, by container id, as
// paths relative to the hierarchy root (what For takes). It walks the
// first hierarchy down to a few levels (kubepods/burstable/pod…/…), so
// it is only run by the orphan sweep after a crash.
func (h *Hierarchies) ConmonCgroups() map[string]string {
	out := map[string]string{}
	if h == nil || len(h.mounts) == 0 {
		return out
	}
	root := h.mounts[0]
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			p := filepath.Join(dir, e.Name())
			if id, ok := strings.CutPrefix(e.Name(), conmonCgroupPrefix); ok {
				rel, _ := filepath.Rel(root, p)
				out[id] = "/" + rel
				continue
			}
			if depth < 5 {
				walk(p, depth+1)
			}
		}
	}
	walk(root, 0)
	return out
}

// ConmonCgroupName is the name of the cgroup of container id's conmon.
func ConmonCgroupName(id string) string { return conmonCgroupPrefix + id }
