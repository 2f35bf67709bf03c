package idmap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// The kernel cannot idmap an overlay mount itself (overlayfs lacks
// FS_ALLOW_IDMAP; mount_setattr answers EINVAL), but overlayfs accepts
// idmapped layers. So a container's rootfs in a user namespace is a new
// overlay of the same layers that containers/storage stacked for it,
// reached through one idmapped mount of the overlay driver's home: on
// disk the files keep the container's ids, and the overlay shows them
// mapped to the pod's host ids.

// OverlayLayers is how containers/storage's overlay driver laid out the
// writable layer mounted at merged (<home>/<layer>/merged): lowers are
// relative to home (l/<short>, symlinks to ../<layer>/diff). Layer is ""
// for a read-only stack (an image), which has no upper dir.
type OverlayLayers struct {
	Home, Layer string
	Lowers      []string
	// Empty is an empty directory added as the bottom lower when a
	// read-only stack has only one (overlayfs wants two).
	Empty string
}

// StorageImageOverlay reads the layer stack of a containers/storage
// read-only image mount at merged: the top layer's own diff over its
// lowers. empty is an empty directory for a one-layer image.
func StorageImageOverlay(merged, empty string) (OverlayLayers, error) {
	l, err := storageLayers(merged, true)
	if err != nil {
		return OverlayLayers{}, err
	}
	l.Lowers = append([]string{filepath.Join(l.Layer, "diff")}, l.Lowers...)
	l.Layer = ""
	if len(l.Lowers) == 1 {
		l.Empty = empty
	}
	return l, nil
}

// StorageOverlay reads the layer stack of a containers/storage overlay
// mount at merged.
func StorageOverlay(merged string) (OverlayLayers, error) {
	return storageLayers(merged, false)
}

func storageLayers(merged string, image bool) (OverlayLayers, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(merged, &st); err != nil {
		return OverlayLayers{}, fmt.Errorf("rootfs %s: %w", merged, err)
	}
	if st.Type != unix.OVERLAYFS_SUPER_MAGIC || filepath.Base(merged) != "merged" {
		return OverlayLayers{}, fmt.Errorf("rootfs %s is not a containers/storage overlay mount", merged)
	}
	layerDir := filepath.Dir(merged)
	l := OverlayLayers{Home: filepath.Dir(layerDir), Layer: filepath.Base(layerDir)}
	data, err := os.ReadFile(filepath.Join(layerDir, "lower"))
	if image && errors.Is(err, os.ErrNotExist) {
		return l, nil // the base layer
	}
	if err != nil {
		return OverlayLayers{}, fmt.Errorf("rootfs %s: read its lower layers: %w", merged, err)
	}
	for _, low := range strings.Split(strings.TrimSpace(string(data)), ":") {
		if low == "" || filepath.IsAbs(low) || strings.Contains(low, "..") {
			return OverlayLayers{}, fmt.Errorf("rootfs %s: unexpected lower layer %q", merged, low)
		}
		l.Lowers = append(l.Lowers, low)
	}
	if len(l.Lowers) == 0 && !image {
		return OverlayLayers{}, fmt.Errorf("rootfs %s has no lower layers", merged)
	}
	return l, nil
}

// MountOverlay mounts at dst an overlay of layers whose ids are mapped
// through the user namespace at usernsPath with root (container id 0)
// at host uid rootUID and gid rootGID. scratch is where the idmapped
// mount of the layers' home is attached while the overlay is made; it is
// gone again when MountOverlay returns (the overlay keeps what it
// needs). On failure nothing is left mounted.
func MountOverlay(layers OverlayLayers, dst, scratch, usernsPath string, rootUID, rootGID uint32) error {
	if err := mountTop(layers.Home, scratch, usernsPath); err != nil {
		return err
	}
	defer func() { _ = Unmount(scratch) }()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("overlay rootfs: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- overlayAs(layers, scratch, dst, rootUID, rootGID) }()
	if err := <-done; err != nil {
		_ = os.Remove(dst)
		return err
	}
	return nil
}

// overlayAs makes the overlay with the file system ids of the pod's root:
// overlayfs creates its upper files with the credentials of whoever
// mounted it, and through the idmapped layers only the pod's ids can
// own anything. It runs on a thread of its own that is thrown away
// afterwards (the goroutine exits while still locked to it), so the
// changed credentials never reach other goroutines.
func overlayAs(l OverlayLayers, mapped, dst string, uid, gid uint32) error {
	runtime.LockOSThread()
	// setfsuid(2) and setfsgid(2) apply to this thread only, and do not
	// report failure: the id read back by the next call says.
	_ = unix.Setfsgid(int(gid))
	_ = unix.Setfsuid(int(uid))
	if got, _ := unix.SetfsuidRetUid(int(uid)); got != int(uid) {
		return fmt.Errorf("overlay rootfs: setfsuid(%d) did not take", uid)
	}
	// A non-zero fsuid drops the file capabilities from the effective
	// set; the mount must still read every lower file.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var caps [2]unix.CapUserData
	if err := unix.Capget(&hdr, &caps[0]); err != nil {
		return fmt.Errorf("overlay rootfs: capget: %w", err)
	}
	caps[0].Effective, caps[1].Effective = caps[0].Permitted, caps[1].Permitted
	if err := unix.Capset(&hdr, &caps[0]); err != nil {
		return fmt.Errorf("overlay rootfs: capset: %w", err)
	}
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("overlay rootfs: fsopen: %w", err)
	}
	defer unix.Close(fsfd)
	set := func(k, v string) error {
		if err := unix.FsconfigSetString(fsfd, k, v); err != nil {
			return fmt.Errorf("overlay rootfs: %s=%s: %w", k, v, err)
		}
		return nil
	}
	for _, low := range l.Lowers {
		if err := set("lowerdir+", filepath.Join(mapped, low)); err != nil {
			return err
		}
	}
	attrs := 0
	if l.Layer == "" {
		attrs = unix.MOUNT_ATTR_RDONLY
		if l.Empty != "" {
			if err := os.MkdirAll(l.Empty, 0o755); err != nil {
				return fmt.Errorf("overlay: %w", err)
			}
			if err := set("lowerdir+", l.Empty); err != nil {
				return err
			}
		}
	} else {
		if err := set("upperdir", filepath.Join(mapped, l.Layer, "diff")); err != nil {
			return err
		}
		if err := set("workdir", filepath.Join(mapped, l.Layer, "work")); err != nil {
			return err
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("overlay rootfs: create: %w", errors.Join(err, fsError(fsfd)))
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, attrs)
	if err != nil {
		return fmt.Errorf("overlay rootfs: fsmount: %w", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("overlay rootfs: move_mount to %s: %w", dst, err)
	}
	return nil
}

// fsError reads the kernel's message about a failed fsconfig, if any.
func fsError(fd int) error {
	buf := make([]byte, 1024)
	n, err := unix.Read(fd, buf)
	if err != nil || n <= 0 {
		return nil
	}
	return errors.New(strings.TrimSpace(string(buf[:n])))
}
