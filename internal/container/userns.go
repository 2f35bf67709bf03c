package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/idmap"
	"github.com/berth-cri/berth/internal/pod"
	"github.com/berth-cri/berth/internal/runtime"
)

// idmapRoot is where the idmapped mounts of containers in a user
// namespace live, one directory per container (and one per pod holder,
// named by the pod): outside the bundles, so that removing a bundle
// never walks into a volume.
func idmapRoot(runDir string) string { return idmap.Root(runDir) }

func (m *Manager) idmapDir(id string) string {
	return filepath.Join(idmapRoot(m.cfg().Berth.RunDir), id)
}

// idmapContainer makes the container of a pod with its own user
// namespace see its rootfs and volumes with the pod's ids, through
// idmapped mounts berth makes itself (runc 1.1 cannot): the rootfs
// becomes an overlay of the writable layer's stack on idmapped layers
// (storage's own mount of it is given up, so that one upper dir is
// never in two overlays), and every bind source an idmapped clone. s is
// rewritten to use them. Files are never chowned: on disk they keep the
// ids the container sees. Everything is released by u on failure, and
// by releaseIDMapped at removal.
func (m *Manager) idmapContainer(ctx context.Context, id string, sb *pod.Sandbox,
	rt runtime.OCI, handler string, rootfs string, store Layers, volumes imageVolumes, s *specs.Spec, u *undo) error {
	if !m.features.Of(ctx, rt).UserNamespaces {
		return fmt.Errorf("pod %s has its own user namespace, but runtime handler %q or this host cannot run containers in one (no idmapped overlay mounts): %w",
			sb.ID, handler, errdefs.ErrFailedPrecondition)
	}
	layers, err := idmap.StorageOverlay(rootfs)
	if err != nil {
		return fmt.Errorf("user namespace: %w (%w)", err, errdefs.ErrFailedPrecondition)
	}
	rootUID, okU := idmap.HostID(sb.IDMappings.UIDs, 0)
	rootGID, okG := idmap.HostID(sb.IDMappings.GIDs, 0)
	if !okU || !okG {
		return fmt.Errorf("pod %s: its user namespace does not map root: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	dir := m.idmapDir(id)
	u.add(func() {
		if err := idmap.Release(dir); err != nil {
			m.log.Error("undo: idmapped mounts", "id", id, "error", err)
		}
	})
	if err := idmap.SearchableDir(dir, m.cfg().Berth.RunDir); err != nil {
		return fmt.Errorf("user namespace: %w", err)
	}
	if _, err := store.Unmount(id, false); err != nil {
		return fmt.Errorf("user namespace: unmount storage's rootfs: %w", err)
	}
	mapped := filepath.Join(dir, "rootfs")
	if err := idmap.MountOverlay(layers, mapped, filepath.Join(dir, "layers"), sb.UserNS, rootUID, rootGID); err != nil {
		return fmt.Errorf("user namespace: %w", err)
	}
	s.Root.Path = mapped
	// runc 1.1 makes the bind mounts from inside the user namespace, as
	// the pod's root, who can reach only what lies under directories
	// searchable by others: every bind source (the request's volumes and
	// the pod's files and /dev/shm) gets a mount of its own in dir,
	// idmapped so that it shows its host owners.
	for i := range s.Mounts {
		mt := &s.Mounts[i]
		if mt.Type != "bind" {
			continue
		}
		vol := filepath.Join(dir, fmt.Sprintf("m%d", i))
		if img, ok := imageVolumeAt(volumes, mt.Destination); ok {
			// An image volume is an overlay, which cannot be idmapped
			// itself: it gets a read-only overlay of its own on the
			// image's idmapped layers, like the rootfs.
			src, err := m.idmapImage(img, vol, dir, i, sb.UserNS)
			if err != nil {
				return fmt.Errorf("mount %s: user namespace: %w", mt.Destination, err)
			}
			mt.Source = src
			continue
		}
		if err := idmap.Mount(mt.Source, vol, sb.UserNS); err != nil {
			return fmt.Errorf("mount %s: user namespace: %w", mt.Destination, err)
		}
		mt.Source = vol
	}
	return nil
}

func imageVolumeAt(volumes imageVolumes, dst string) (imageVolume, bool) {
	for p, v := range volumes {
		if filepath.Clean(p) == dst {
			return v, true
		}
	}
	return imageVolume{}, false
}

// idmapImage stacks at vol a read-only overlay of image volume v's layers
// seen through the pod's user namespace, and returns the source for the
// volume's bind: vol, or the sub path in it (already resolved inside the
// image, symlinks included, by image.SubPath).
func (m *Manager) idmapImage(v imageVolume, vol, dir string, i int, userns string) (string, error) {
	rel, err := filepath.Rel(v.image.Path, v.source)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("image volume source %s is outside the image at %s", v.source, v.image.Path)
	}
	layers, err := idmap.StorageImageOverlay(v.image.Path, filepath.Join(dir, fmt.Sprintf("e%d", i)))
	if err != nil {
		return "", err
	}
	if err := idmap.MountOverlay(layers, vol, filepath.Join(dir, "layers"), userns, 0, 0); err != nil {
		return "", err
	}
	return filepath.Join(vol, rel), nil
}

// releaseIDMapped unmounts the idmapped mounts of container id, if any.
func (m *Manager) releaseIDMapped(id string) error {
	if err := idmap.Release(m.idmapDir(id)); err != nil {
		return fmt.Errorf("release idmapped mounts of %s: %w", id, err)
	}
	return nil
}

// sweepIDMapped releases the idmapped mounts of containers that orphan
// says have no record, and returns how many it released.
func (m *Manager) sweepIDMapped(orphan func(string) bool) int {
	ents, err := os.ReadDir(idmapRoot(m.cfg().Berth.RunDir))
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if !orphan(e.Name()) {
			continue
		}
		m.log.Info("sweep: idmapped mounts of no container", "id", e.Name())
		if err := m.releaseIDMapped(e.Name()); err != nil {
			m.log.Warn("sweep: idmapped mounts", "id", e.Name(), "error", err)
			continue
		}
		n++
	}
	return n
}

// ReleaseAllIDMapped releases every container's idmapped mounts under
// runDir, for `berthd wipe`.
func ReleaseAllIDMapped(runDir string) error {
	root := idmapRoot(runDir)
	ents, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		errs = append(errs, idmap.Release(filepath.Join(root, e.Name())))
	}
	return errors.Join(errs...)
}
