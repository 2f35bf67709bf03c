// Package cgroups is berth's one view of the host's cgroups: the mounted
// hierarchies (read from mountinfo once per caller), the default parent
// of pods that name none, cgroup paths, the cgroups berth makes itself
// (pod parents, conmon's) and their removal, and the OOM-kill counter.
package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Root is where the host mounts its cgroup hierarchies.
const Root = "/sys/fs/cgroup"

// The parent of a pod's cgroups when its config names none.
const (
	DefaultParent = "/berth"       // cgroupfs
	DefaultSlice  = "system.slice" // systemd
)

// DefaultParentFor is the default parent for a cgroup manager
// ("cgroupfs" or "systemd").
func DefaultParentFor(manager string) string {
	if manager == "systemd" {
		return DefaultSlice
	}
	return DefaultParent
}

// Mount is one mounted cgroup hierarchy.
type Mount struct {
	Dir string
	// Unified is the v2 hierarchy (a hybrid host has one beside v1's).
	Unified bool
	// Controllers are a v1 hierarchy's controllers ("cpu", "cpuacct").
	Controllers []string
}

// Has reports whether a v1 hierarchy carries controller c.
func (m Mount) Has(c string) bool {
	for _, x := range m.Controllers {
		if x == c {
			return true
		}
	}
	return false
}

// Mounts lists the host's cgroup hierarchies from /proc/self/mountinfo.
func Mounts() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	defer f.Close()
	return ParseMounts(f)
}

// ParseMounts reads mountinfo lines:
// "id parent maj:min root mountpoint opts [optional...] - fstype src superopts".
func ParseMounts(r io.Reader) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 {
			continue
		}
		switch qf[0] {
		case "cgroup2":
			out = append(out, Mount{Dir: pf[4], Unified: true})
		case "cgroup":
			m := Mount{Dir: pf[4]}
			for _, opt := range strings.Split(qf[2], ",") {
				switch opt {
				case "rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec", "xattr":
					continue
				}
				if !strings.Contains(opt, "=") {
					m.Controllers = append(m.Controllers, opt)
				}
			}
			out = append(out, m)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return out, nil
}

// ControllerDir is the mount point of v1 controller c, "" when none.
func ControllerDir(mounts []Mount, c string) string {
	for _, m := range mounts {
		if !m.Unified && m.Has(c) {
			return m.Dir
		}
	}
	return ""
}

// IsUnified reports whether root is a cgroup v2 mount: a unified-only
// host when root is /sys/fs/cgroup.
func IsUnified(root string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return false
	}
	return st.Type == unix.CGROUP2_SUPER_MAGIC
}

// Ensure creates parent (a cgroupfs path) in every hierarchy where it is
// missing and returns the directories it made, deepest last, so that its
// owner removes exactly those. runc would create them too, but then
// nobody would remove them.
func Ensure(parent string) ([]string, error) {
	mounts, err := Mounts()
	if err != nil {
		return nil, err
	}
	var created []string
	for _, mnt := range mounts {
		dir := mnt.Dir
		for _, c := range strings.Split(strings.Trim(parent, "/"), "/") {
			dir = filepath.Join(dir, c)
			err := os.Mkdir(dir, 0o755)
			switch {
			case err == nil:
				created = append(created, dir)
			case errors.Is(err, os.ErrExist):
			default:
				RemoveDirs(created)
				return nil, fmt.Errorf("create cgroup %s: %w", dir, err)
			}
		}
	}
	return created, nil
}

// RemoveDirs removes cgroup dirs, deepest first, and returns those still
// in use (another pod's containers under a shared parent), which stay.
func RemoveDirs(dirs []string) []string {
	var kept []string
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
			kept = append(kept, dirs[i])
		}
	}
	return kept
}

// OOMKilled reports whether the memory cgroup at rel (a cgroupfs path)
// has OOM-killed a process: oom_kill in memory.oom_control (v1) or
// memory.events (v2).
func OOMKilled(rel string) bool {
	file := filepath.Join(Root, rel, "memory.events")
	if !IsUnified(Root) {
		file = filepath.Join(Root, "memory", rel, "memory.oom_control")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n > 0
		}
	}
	return false
}
