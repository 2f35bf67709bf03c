package pod

import (
	"path/filepath"
	"strings"

	"github.com/berth-cri/berth/internal/cgroups"
)

// cgroupParent validates the pod's cgroup parent for the configured
// manager. cgroupfs wants an absolute path without "..", which can then
// only name a cgroup below each hierarchy's root; systemd wants a slice
// name ("kubepods-besteffort-pod1.slice"), never a path.
func cgroupParent(manager, p string) (string, error) {
	if manager == "systemd" {
		if p == "" {
			return cgroups.DefaultSlice, nil
		}
		if !validSlice(p) {
			return "", invalid("linux.cgroup_parent %q is not a systemd slice name like \"kubepods-besteffort.slice\"", p)
		}
		return p, nil
	}
	if p == "" {
		return cgroups.DefaultParent, nil
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
