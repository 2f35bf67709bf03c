package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// FsUsage is the space one kind of content takes on the storage
// filesystem.
type FsUsage struct {
	// Mountpoint is the storage root; the kubelet asks the filesystem
	// holding it for capacity.
	Mountpoint string
	UsedBytes  uint64
	InodesUsed uint64
}

// FsInfo is the answer to ImageFsInfo: image content (image layers,
// image metadata, pull staging) and container writable layers (with the
// containers' storage directories), both on the storage root.
type FsInfo struct {
	Timestamp  time.Time
	Images     FsUsage
	Containers FsUsage
}

// FsInfo measures the storage root like du: allocated blocks, each inode
// once (hard links included), not crossing into other filesystems (the
// merged mounts of running containers would count the image twice).
// Directories of container layers count for Containers, everything else
// for Images.
func (s *Service) FsInfo(ctx context.Context) (*FsInfo, error) {
	store, err := s.Store()
	if err != nil {
		return nil, err
	}
	root := store.GraphRoot()
	driver := store.GraphDriverName()
	containers, err := store.Containers()
	if err != nil {
		return nil, wrapStorageErr("list containers", err)
	}
	// Layer directories: <root>/overlay/<id> for overlay,
	// <root>/vfs/dir/<id> for vfs.
	containerDirs := map[string]bool{filepath.Join(root, driver+"-containers"): true}
	for _, c := range containers {
		containerDirs[filepath.Join(root, driver, c.LayerID)] = true
		containerDirs[filepath.Join(root, driver, "dir", c.LayerID)] = true
	}
	var rootStat syscall.Stat_t
	if err := syscall.Lstat(root, &rootStat); err != nil {
		return nil, fmt.Errorf("stat storage root %s: %w", root, err)
	}
	w := &duWalker{ctx: ctx, dev: rootStat.Dev, containerDirs: containerDirs, seen: map[uint64]bool{}}
	if err := w.walk(root, false); err != nil {
		return nil, fmt.Errorf("measure storage root %s: %w", root, err)
	}
	return &FsInfo{
		Timestamp:  time.Now(),
		Images:     FsUsage{Mountpoint: root, UsedBytes: w.used[0].bytes, InodesUsed: w.used[0].inodes},
		Containers: FsUsage{Mountpoint: root, UsedBytes: w.used[1].bytes, InodesUsed: w.used[1].inodes},
	}, nil
}

type usage struct{ bytes, inodes uint64 }

// duWalker sums usage into used[0] (images) and used[1] (containers).
type duWalker struct {
	ctx           context.Context
	dev           uint64
	containerDirs map[string]bool
	seen          map[uint64]bool
	used          [2]usage
}

func (w *duWalker) walk(dir string, container bool) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	container = container || w.containerDirs[dir]
	if !w.add(dir, container) {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		// Layers come and go while we walk.
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if e.IsDir() {
			if err := w.walk(p, container); err != nil {
				return err
			}
			continue
		}
		w.add(p, container || w.containerDirs[p])
	}
	return nil
}

// add counts one inode; it reports false for what must not be descended
// into (another filesystem, or gone).
func (w *duWalker) add(p string, container bool) bool {
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return false
	}
	if st.Dev != w.dev {
		return false
	}
	if w.seen[st.Ino] {
		return true
	}
	w.seen[st.Ino] = true
	i := 0
	if container {
		i = 1
	}
	w.used[i].bytes += uint64(st.Blocks) * 512
	w.used[i].inodes++
	return true
}
