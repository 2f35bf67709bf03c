package stats

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"go.podman.io/storage"
	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
)

// LayerUsage is the space a container's writable layer takes.
type LayerUsage struct {
	Time time.Time
	// Mountpoint identifies the filesystem: the storage root, as
	// ImageFsInfo reports it.
	Mountpoint    string
	Bytes, Inodes uint64
}

// LayerSource measures writable layers. Measuring walks a directory
// tree, so the collector calls it only from its background worker,
// never from an RPC.
type LayerSource interface {
	LayerUsage(ctx context.Context, storageID string) (LayerUsage, error)
}

// StorageLayers measures the writable layers of containers/storage
// containers. store is called on every measurement, so storage is opened
// only when a container exists to be measured.
func StorageLayers(store func() (storage.Store, error)) LayerSource {
	return storageLayers{store: store}
}

type storageLayers struct {
	store func() (storage.Store, error)
}

// LayerUsage finds the storage container's read-write layer and
// measures its upper directory like du: allocated blocks, each inode
// once, without crossing into other filesystems.
func (s storageLayers) LayerUsage(ctx context.Context, storageID string) (LayerUsage, error) {
	st, err := s.store()
	if err != nil {
		return LayerUsage{}, err
	}
	c, err := st.Container(storageID)
	if err != nil {
		if errors.Is(err, storage.ErrContainerUnknown) {
			return LayerUsage{}, fmt.Errorf("storage container %s: %w", storageID, errdefs.ErrNotFound)
		}
		return LayerUsage{}, fmt.Errorf("storage container %s: %w", storageID, err)
	}
	root := st.GraphRoot()
	dir := layerDir(root, st.GraphDriverName(), c.LayerID)
	bytes, inodes, err := diskUsage(ctx, dir)
	if err != nil {
		return LayerUsage{}, err
	}
	return LayerUsage{Time: time.Now(), Mountpoint: root, Bytes: bytes, Inodes: inodes}, nil
}

// layerDir is the directory holding a layer's own files: the upper
// directory of overlay, the whole tree of vfs.
func layerDir(root, driver, layerID string) string {
	switch driver {
	case "overlay", "overlay2":
		return filepath.Join(root, "overlay", layerID, "diff")
	case "vfs":
		return filepath.Join(root, "vfs", "dir", layerID)
	}
	return filepath.Join(root, driver, layerID)
}

// diskUsage sums the allocated bytes and counts the inodes below dir,
// each inode once (hard links), staying on dir's filesystem.
func diskUsage(ctx context.Context, dir string) (bytes, inodes uint64, err error) {
	var root unix.Stat_t
	if err := unix.Lstat(dir, &root); err != nil {
		return 0, 0, fmt.Errorf("measure %s: %w", dir, err)
	}
	seen := map[uint64]bool{}
	n := 0
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		}
		if n++; n%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return &fs.PathError{Op: "lstat", Path: p, Err: err}
		}
		if st.Dev != root.Dev {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if seen[st.Ino] {
			return nil
		}
		seen[st.Ino] = true
		inodes++
		bytes += uint64(st.Blocks) * 512
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("measure %s: %w", dir, err)
	}
	return bytes, inodes, nil
}
