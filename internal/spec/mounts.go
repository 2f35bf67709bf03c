package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// cleanContainerPath checks a path inside the container: absolute, no
// ".." component (which could climb out of a volume or the rootfs) and
// no control characters; it returns the cleaned path.
func cleanContainerPath(what, p string) (string, error) {
	if !path.IsAbs(p) {
		return "", invalid("%s %q is not absolute", what, p)
	}
	if strings.ContainsAny(p, "\x00\n\r") {
		return "", invalid("%s %q contains a control character", what, p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", invalid("%s %q contains '..'", what, p)
		}
	}
	return path.Clean(p), nil
}

// ValidateMounts checks the request's mounts without touching the host
// beyond a stat of each source: a missing source is an error, never
// created (a typo must not make a directory on the node).
func ValidateMounts(mounts []*runtimeapi.Mount) error {
	seen := map[string]bool{}
	for _, m := range mounts {
		dst, err := cleanContainerPath("mount destination", m.GetContainerPath())
		if err != nil {
			return err
		}
		if seen[dst] {
			return invalid("two mounts at %s", dst)
		}
		seen[dst] = true
		if err := validateRecursiveReadOnly(dst, m); err != nil {
			return err
		}
		if m.GetImage().GetImage() != "" {
			if err := validateImageMount(dst, m); err != nil {
				return err
			}
			continue
		}
		if m.GetImageSubPath() != "" {
			return invalid("mount %s: image_sub_path is set without image", dst)
		}
		src := m.GetHostPath()
		if !filepath.IsAbs(src) {
			return invalid("mount %s: host path %q is not absolute", dst, src)
		}
		// As the Kubernetes API's hostPath rule: no way up and out of the
		// directory the path names, and nothing conmon or runc would split.
		if slices.Contains(strings.Split(src, "/"), "..") || strings.ContainsAny(src, "\x00\n\r") {
			return invalid("mount %s: host path %q contains '..' or a control character", dst, src)
		}
		if _, err := os.Stat(src); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("mount %s: host path %s does not exist: %w", dst, src, errdefs.ErrInvalidArgument)
			}
			return fmt.Errorf("mount %s: host path %s: %v: %w", dst, src, err, errdefs.ErrFailedPrecondition)
		}
	}
	return nil
}

func validateRecursiveReadOnly(dst string, m *runtimeapi.Mount) error {
	if !m.GetRecursiveReadOnly() {
		return nil
	}
	// Read-only all the way down needs a read-only mount whose
	// submounts cannot come back through propagation.
	if !m.GetReadonly() {
		return invalid("mount %s: recursive_read_only requires readonly", dst)
	}
	if m.GetPropagation() != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
		return invalid("mount %s: recursive_read_only requires private propagation, not %v", dst, m.GetPropagation())
	}
	return nil
}

// validateImageMount checks an image volume (KEP-4639): its content
// comes from the image alone, and its sub path stays inside the image.
// Whether the sub path exists, or leaves the image through a symlink,
// is only known once the image is mounted (image.SubPath).
func validateImageMount(dst string, m *runtimeapi.Mount) error {
	if m.GetHostPath() != "" {
		return invalid("mount %s: host_path and image are both set; an image volume takes its content from the image only", dst)
	}
	sub := m.GetImageSubPath()
	if sub == "" {
		return nil
	}
	if path.IsAbs(sub) {
		return invalid("mount %s: image_sub_path %q must be relative to the image's root", dst, sub)
	}
	if strings.ContainsAny(sub, "\x00\n\r") {
		return invalid("mount %s: image_sub_path %q contains a control character", dst, sub)
	}
	if slices.Contains(strings.Split(sub, "/"), "..") {
		return invalid("mount %s: image_sub_path %q contains '..'", dst, sub)
	}
	return nil
}

// IsImageMount reports whether m mounts an image (an image volume).
func IsImageMount(m *runtimeapi.Mount) bool { return m.GetImage().GetImage() != "" }

// WantsRecursiveReadOnly reports whether any mount asks for a recursive
// read-only mount, which the OCI runtime and kernel must support.
func WantsRecursiveReadOnly(mounts []*runtimeapi.Mount) bool {
	return slices.ContainsFunc(mounts, (*runtimeapi.Mount).GetRecursiveReadOnly)
}

// baseMounts are the filesystems every container gets (the same set as
// runc's and CRI-O's default spec).
func baseMounts(privileged bool) []specs.Mount {
	sysOpts := []string{"nosuid", "noexec", "nodev", "ro"}
	cgOpts := []string{"nosuid", "noexec", "nodev", "relatime", "ro"}
	if privileged {
		sysOpts = []string{"nosuid", "noexec", "nodev", "rw"}
		cgOpts = []string{"nosuid", "noexec", "nodev", "relatime", "rw"}
	}
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: sysOpts},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: cgOpts},
	}
}

// podMounts are the files the pod shares with its containers.
func podMounts(sb *Sandbox, readonly bool) []specs.Mount {
	var out []specs.Mount
	bind := func(dst, src string, ro bool) {
		if src == "" {
			return
		}
		opts := []string{"rbind", "rprivate", "nosuid", "nodev", "noexec"}
		if ro {
			opts = append(opts, "ro")
		}
		out = append(out, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts})
	}
	if sb.ShmPath != "" {
		bind("/dev/shm", sb.ShmPath, false)
	} else {
		out = append(out, specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm",
			Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}})
	}
	bind("/etc/resolv.conf", sb.ResolvConfPath, readonly)
	bind("/etc/hostname", sb.HostnamePath, readonly)
	bind("/etc/hosts", sb.HostsPath, readonly)
	return out
}

// userMounts turns the request's mounts into bind mounts and reports the
// strongest propagation asked for, which the rootfs must allow.
func userMounts(mounts []*runtimeapi.Mount, imageVolumes map[string]string) ([]specs.Mount, string, error) {
	var out []specs.Mount
	rootProp := ""
	for _, m := range mounts {
		dst, err := cleanContainerPath("mount destination", m.GetContainerPath())
		if err != nil {
			return nil, "", err
		}
		opts := []string{"rbind"}
		switch m.GetPropagation() {
		case runtimeapi.MountPropagation_PROPAGATION_PRIVATE:
			opts = append(opts, "rprivate")
		case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			opts = append(opts, "rslave")
			if rootProp == "" {
				rootProp = "rslave"
			}
		case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			opts = append(opts, "rshared")
			rootProp = "rshared"
		default:
			return nil, "", invalid("mount %s: unknown propagation %v", dst, m.GetPropagation())
		}
		src := m.GetHostPath()
		if IsImageMount(m) {
			if src = imageVolumes[m.GetContainerPath()]; src == "" {
				return nil, "", fmt.Errorf("mount %s: image %s is not mounted", dst, m.GetImage().GetImage())
			}
		}
		// An image volume is read-only whatever the request says.
		if m.GetReadonly() || IsImageMount(m) {
			opts = append(opts, "ro")
		} else {
			opts = append(opts, "rw")
		}
		if m.GetRecursiveReadOnly() {
			// runc's rro: read-only applied to every submount too
			// (mount_setattr with AT_RECURSIVE), not just the top one.
			opts = append(opts, "rro")
		}
		for _, o := range m.GetMountOptions() {
			if strings.ContainsAny(o, ",\x00") {
				return nil, "", invalid("mount %s: bad mount option %q", dst, o)
			}
			opts = append(opts, o)
		}
		out = append(out, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts})
	}
	return out, rootProp, nil
}

// mergeMounts puts the request's mounts over the defaults (a mount at the
// same destination, or one above a default, replaces it) and sorts them
// so that a parent is always mounted before what lies beneath it.
func mergeMounts(defaults, user []specs.Mount) []specs.Mount {
	var out []specs.Mount
	for _, d := range defaults {
		covered := slices.ContainsFunc(user, func(u specs.Mount) bool {
			return u.Destination == d.Destination ||
				(u.Destination != "/dev" && strings.HasPrefix(d.Destination, u.Destination+"/"))
		})
		if !covered {
			out = append(out, d)
		}
	}
	out = append(out, user...)
	sort.SliceStable(out, func(i, j int) bool {
		return depth(out[i].Destination) < depth(out[j].Destination)
	})
	return out
}

func depth(p string) int {
	if p == "/" {
		return 0
	}
	return strings.Count(path.Clean(p), "/")
}

// ImageVolumes returns the image's VOLUME paths that no request mount
// covers; the container manager creates them as empty directories inside
// the rootfs, the way CRI-O's default image_volumes=mkdir does. A path
// with ".." is refused: it could name a directory outside the rootfs.
func ImageVolumes(volumes map[string]struct{}, mounts []*runtimeapi.Mount) ([]string, error) {
	var out []string
	for v := range volumes {
		p, err := cleanContainerPath("image volume", v)
		if err != nil {
			return nil, err
		}
		if p == "/" {
			return nil, invalid("image volume at /")
		}
		if slices.ContainsFunc(mounts, func(m *runtimeapi.Mount) bool { return path.Clean(m.GetContainerPath()) == p }) {
			continue
		}
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}

// devices resolves the request's devices (a host directory gives every
// device under it) and the device cgroup rules that allow them.
func devices(req []*runtimeapi.Device, privileged bool, h *Host) ([]specs.LinuxDevice, []specs.LinuxDeviceCgroup, error) {
	rules := []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	var devs []specs.LinuxDevice
	add := func(d Device, ctrPath, perms string) {
		mode := d.FileMode
		uid, gid := d.UID, d.GID
		devs = append(devs, specs.LinuxDevice{Path: ctrPath, Type: d.Type, Major: d.Major, Minor: d.Minor, FileMode: &mode, UID: &uid, GID: &gid})
		if !privileged {
			maj, mnr := d.Major, d.Minor
			rules = append(rules, specs.LinuxDeviceCgroup{Allow: true, Type: d.Type, Major: &maj, Minor: &mnr, Access: perms})
		}
	}
	if privileged {
		// Everything is allowed; the host's nodes are created too.
		rules = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	}
	for _, d := range req {
		perms := d.GetPermissions()
		if perms == "" {
			perms = "rwm"
		}
		if strings.Trim(perms, "rwm") != "" {
			return nil, nil, invalid("device %s: permissions %q are not a subset of rwm", d.GetHostPath(), perms)
		}
		ctr, err := cleanContainerPath("device path", d.GetContainerPath())
		if err != nil {
			return nil, nil, err
		}
		host := d.GetHostPath()
		if !filepath.IsAbs(host) {
			return nil, nil, invalid("device host path %q is not absolute", host)
		}
		st, err := os.Stat(host)
		if err != nil {
			return nil, nil, fmt.Errorf("device %s: %v: %w", host, err, errdefs.ErrInvalidArgument)
		}
		if !st.IsDir() {
			dev, err := DeviceFromPath(host)
			if err != nil {
				return nil, nil, fmt.Errorf("device %s: %v: %w", host, err, errdefs.ErrInvalidArgument)
			}
			add(dev, ctr, perms)
			continue
		}
		// A directory: every device node below it, at the same relative path.
		err = filepath.WalkDir(host, func(p string, de fs.DirEntry, err error) error {
			if err != nil || de.IsDir() || de.Type()&os.ModeDevice == 0 {
				return nil
			}
			dev, err := DeviceFromPath(p)
			if err != nil {
				return nil
			}
			rel, _ := filepath.Rel(host, p)
			add(dev, path.Join(ctr, filepath.ToSlash(rel)), perms)
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("device dir %s: %w", host, err)
		}
	}
	if privileged {
		for _, d := range h.Devices {
			if !slices.ContainsFunc(devs, func(x specs.LinuxDevice) bool { return x.Path == d.Path }) {
				add(d, d.Path, "rwm")
			}
		}
	}
	return devs, rules, nil
}
