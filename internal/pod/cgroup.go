package pod

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Default cgroup parents when the pod names none.
const (
	defaultCgroupfsParent = "/berth"
	defaultSystemdParent  = "system.slice"
)

// cgroupParent validates the pod's cgroup parent for the configured
// manager. cgroupfs wants an absolute path without "..", which can then
// only name a cgroup below each hierarchy's root; systemd wants a slice
// name ("kubepods-besteffort-pod1.slice"), never a path.
func cgroupParent(manager, p string) (string, error) {
	if manager == "systemd" {
		if p == "" {
			return defaultSystemdParent, nil
		}
		if !validSlice(p) {
			return "", invalid("linux.cgroup_parent %q is not a systemd slice name like \"kubepods-besteffort.slice\"", p)
		}
		return p, nil
	}
	if p == "" {
		return defaultCgroupfsParent, nil
	}
	if !filepath.IsAbs(p) || hasDotDot(p) || strings.ContainsAny(p, "\x00\n") {
		return "", invalid("linux.cgroup_parent %q must be an absolute cgroup path without \"..\"", p)
	}
	if c := filepath.Clean(p); c != "/" {
		return c, nil
	}
	return "", invalid("linux.cgroup_parent %q is the root cgroup", p)
}

// validSlice follows systemd's unit-name rules for slices: the dashes
// express the hierarchy, so none may lead, trail or double.
func validSlice(s string) bool {
	stem, ok := strings.CutSuffix(s, ".slice")
	if !ok || stem == "" || len(s) > 255 {
		return false
	}
	if stem == "-" {
		return true // the root slice
	}
	if strings.HasPrefix(stem, "-") || strings.HasSuffix(stem, "-") || strings.Contains(stem, "--") {
		return false
	}
	for _, r := range stem {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(":_.-\\@", r)) {
			return false
		}
	}
	return true
}

// cgroupMounts lists the mount points of every cgroup hierarchy, v1
// controllers and the v2 unified tree alike (a hybrid host has both).
func cgroupMounts() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint opts [optional...] - fstype src superopts
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && i >= 5 {
				if t := fields[i+1]; t == "cgroup" || t == "cgroup2" {
					out = append(out, fields[4])
				}
				break
			}
		}
	}
	return out, sc.Err()
}

// ensureCgroup creates parent in every cgroupfs hierarchy where it is
// missing and returns the directories it made, deepest last, so the pod
// can remove exactly those. runc would create them too, but then nobody
// would remove them when the pod goes.
func ensureCgroup(parent string) ([]string, error) {
	mounts, err := cgroupMounts()
	if err != nil {
		return nil, fmt.Errorf("list cgroup mounts: %w", err)
	}
	var created []string
	for _, mnt := range mounts {
		dir := mnt
		for _, c := range strings.Split(strings.Trim(parent, "/"), "/") {
			dir = filepath.Join(dir, c)
			err := os.Mkdir(dir, 0o755)
			switch {
			case err == nil:
				created = append(created, dir)
			case errors.Is(err, os.ErrExist):
			default:
				removeCgroups(created)
				return nil, fmt.Errorf("create cgroup %s: %w", dir, err)
			}
		}
	}
	return created, nil
}

// removeCgroups removes the given cgroup dirs, deepest first. A dir
// still in use (another pod's containers under a shared parent) stays.
func removeCgroups(dirs []string) []string {
	var kept []string
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
			kept = append(kept, dirs[i])
		}
	}
	return kept
}
