package idmap

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Mount attaches at dst an idmapped view of the mount tree at src: a
// recursive clone of it (what a bind mount with "rbind" would show)
// whose ids are mapped through the user namespace at usernsPath, so that
// an id k on disk is seen as k inside that namespace. dst is created (a
// directory for a directory, an empty file otherwise). On failure
// nothing is left: no mount, no dst.
func Mount(src, dst, usernsPath string) error {
	ns, err := os.Open(usernsPath)
	if err != nil {
		return fmt.Errorf("idmapped mount of %s: open user namespace: %w", src, err)
	}
	defer ns.Close()
	return attach(src, dst, ns, true)
}

// mountTop is Mount of src's own mount only, without the mounts below
// it: the overlay driver's home holds the mounts of other containers'
// rootfs, which are overlays and cannot be idmapped.
func mountTop(src, dst, usernsPath string) error {
	ns, err := os.Open(usernsPath)
	if err != nil {
		return fmt.Errorf("idmapped mount of %s: open user namespace: %w", src, err)
	}
	defer ns.Close()
	return attach(src, dst, ns, false)
}

// Bind attaches at dst a recursive clone of the mount tree at src, not
// idmapped (for a filesystem that cannot be), the way Mount does.
func Bind(src, dst string) error { return attach(src, dst, nil, true) }

func attach(src, dst string, ns *os.File, recursive bool) (err error) {
	flags, setFlags := uint(unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC), uint(unix.AT_EMPTY_PATH)
	if recursive {
		flags |= unix.AT_RECURSIVE
		setFlags |= unix.AT_RECURSIVE
	}
	tree, err := unix.OpenTree(unix.AT_FDCWD, src, flags)
	if err != nil {
		return fmt.Errorf("idmapped mount of %s: open_tree: %w", src, err)
	}
	defer unix.Close(tree)
	if ns != nil {
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(ns.Fd())}
		if err := unix.MountSetattr(tree, "", setFlags, &attr); err != nil {
			return fmt.Errorf("idmapped mount of %s: mount_setattr(MOUNT_ATTR_IDMAP): %w", src, err)
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(tree, &st); err != nil {
		return fmt.Errorf("idmapped mount of %s: %w", src, err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("idmapped mount of %s: %w", src, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		err = os.Mkdir(dst, 0o755)
	} else {
		var f *os.File
		if f, err = os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444); err == nil {
			err = f.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("idmapped mount of %s: create %s: %w", src, dst, err)
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		_ = os.Remove(dst)
		return fmt.Errorf("idmapped mount of %s: move_mount to %s: %w", src, dst, err)
	}
	return nil
}

// Unmount detaches whatever is mounted at dst (mounts stacked there by
// an earlier attempt too) and removes dst. It never removes anything
// below a mount: dst is removed only once nothing is mounted on it, and
// only if it is an empty directory or a file. Missing is fine.
func Unmount(dst string) error {
	for i := 0; i < 16; i++ {
		err := unix.Unmount(dst, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", dst, err)
		}
	}
	if err := os.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", dst, err)
	}
	return nil
}

// Release unmounts and removes every idmapped mount in dir, then dir
// itself. A directory that is missing is fine.
func Release(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if err := Unmount(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Probe reports whether this host can do what a pod in its own user
// namespace needs: create a user namespace with a mapping, make an
// idmapped mount, and stack an overlay on idmapped layers (a
// container's rootfs). scratch is a directory for the probe's temporary
// layers; everything made there is removed again. nil means it can.
func Probe(scratch string) (err error) {
	const host = 1 << 20
	uns, stop, err := NewUserNS(Mappings{
		UIDs: []Mapping{{ContainerID: 0, HostID: host, Size: 65536}},
		GIDs: []Mapping{{ContainerID: 0, HostID: host, Size: 65536}},
	})
	if err != nil {
		return err
	}
	defer stop()
	dir, err := os.MkdirTemp(scratch, "idmap-probe-")
	if err != nil {
		return fmt.Errorf("probe dir: %w", err)
	}
	merged := filepath.Join(dir, "ctr", "merged")
	defer func() {
		if Unmount(merged) == nil && Unmount(filepath.Join(dir, "mapped")) == nil {
			_ = os.RemoveAll(dir)
		}
	}()
	for _, d := range []string{"low/diff", "ctr/diff", "ctr/work"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "low", "diff", "f"), nil, 0o644); err != nil {
		return err
	}
	layers := OverlayLayers{Home: dir, Layer: "ctr", Lowers: []string{"low/diff"}}
	if err := MountOverlay(layers, merged, filepath.Join(dir, "mapped"), uns, host, host); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(merged, "f"), &st); err != nil {
		return err
	}
	if st.Uid != host || st.Gid != host {
		return fmt.Errorf("overlay on idmapped layers shows %d:%d for a file of root, not %d:%d", st.Uid, st.Gid, host, host)
	}
	return nil
}

// NewUserNS creates a user namespace with mappings m and returns a path
// to it that stays valid until stop is called. A process is needed to
// make one: `cat` started in it waits on a pipe until stop closes it.
func NewUserNS(m Mappings) (path string, stop func(), err error) {
	cat, err := exec.LookPath("cat")
	if err != nil {
		return "", nil, fmt.Errorf("create user namespace: %w", err)
	}
	cmd := exec.Command(cat)
	in, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER,
		UidMappings: SysMappings(m.UIDs),
		GidMappings: SysMappings(m.GIDs),
		Pdeathsig:   syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("create user namespace: %w", err)
	}
	stop = func() {
		_ = in.Close()
		_ = cmd.Wait()
	}
	return fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid), stop, nil
}

// SysMappings converts ms for syscall.SysProcAttr.
func SysMappings(ms []Mapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(ms))
	for i, m := range ms {
		out[i] = syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)}
	}
	return out
}

// Root is the directory under berth's run dir that holds the mounts
// made for pods in a user namespace: one directory per container, and
// one per PID-namespace holder named by its pod.
func Root(runDir string) string { return filepath.Join(runDir, "idmap") }

// SearchableDir makes dir (mode 0711) and checks that a pod's root, a
// plain uid on the host, can pass through every directory above it:
// runc 1.1 makes a container's mounts from inside its user namespace.
// Directories at or below own (berth's run dir) are opened up for search
// (not listing) if they are not; any other must already be.
func SearchableDir(dir, own string) error {
	own = filepath.Clean(own)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if p != own && !strings.HasPrefix(p, own+"/") {
				return fmt.Errorf("the root of a pod's user namespace cannot search %s (mode %v): containers in a user namespace need every directory above %s searchable by others: %w",
					p, fi.Mode().Perm(), dir, errdefs.ErrFailedPrecondition)
			}
			if err := os.Chmod(p, fi.Mode().Perm()|0o001); err != nil {
				return err
			}
		}
		if p == "/" {
			return nil
		}
	}
}
