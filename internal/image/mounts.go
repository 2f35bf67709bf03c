package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"go.podman.io/storage"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Image volumes (KEP-4639): an image's root filesystem mounted read-only
// into containers. Each image is mounted once by containers/storage and
// shared by every container that uses it; the image service counts the
// containers (the holders) and unmounts the image when the last one lets
// go. A container's record names the images it holds, so a restarted
// berthd re-takes those references (Adopt) without touching storage:
// the storage mount outlives the daemon, as the containers do.

// MountedImage is an image mounted for a container.
type MountedImage struct {
	// ID is the storage image ID.
	ID string
	// Digest is a repo@digest of the image, or its ID when it has none:
	// what ContainerStatus reports as the image's ref.
	Digest string
	// Path is the read-only root filesystem of the image on the host.
	Path string
}

// imageMounter is the part of containers/storage that mounts images.
type imageMounter interface {
	MountImage(id string, mountOptions []string, mountLabel string) (string, error)
	UnmountImage(id string, force bool) (bool, error)
}

// imageMounts counts the holders of each mounted image. Its mutex is
// held across storage's mount and unmount calls and across the deletion
// of an image (see whileUnused), so that an image is never deleted while
// a container is mounting it; nothing else waits on it.
type imageMounts struct {
	mu      sync.Mutex
	byImage map[string]*imageMount
}

type imageMount struct {
	// path is where storage mounted the image; empty while the holders
	// are only adopted from records and this process has not mounted it.
	path    string
	holders map[string]bool
}

// acquire mounts image id for holder, or shares the mount already made.
// Taking it twice for one holder is one reference.
func (im *imageMounts) acquire(store imageMounter, id, holder string) (string, error) {
	im.mu.Lock()
	defer im.mu.Unlock()
	m := im.byImage[id]
	if m == nil {
		m = &imageMount{holders: map[string]bool{}}
	}
	if m.path == "" {
		// After a restart storage may count the mount of the previous
		// daemon; a second count is harmless, since release unmounts
		// with force once the last holder is gone.
		p, err := store.MountImage(id, nil, "")
		if err != nil {
			if errors.Is(err, storage.ErrImageUnknown) {
				return "", fmt.Errorf("mount image %s: %w", id, errdefs.ErrNotFound)
			}
			return "", fmt.Errorf("mount image %s: %w", id, err)
		}
		m.path = p
	}
	m.holders[holder] = true
	if im.byImage == nil {
		im.byImage = map[string]*imageMount{}
	}
	im.byImage[id] = m
	return m.path, nil
}

// adopt records that holder uses image id, as its record says, without
// mounting anything: storage's mount is still there from before.
func (im *imageMounts) adopt(id, holder string) {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.byImage == nil {
		im.byImage = map[string]*imageMount{}
	}
	m := im.byImage[id]
	if m == nil {
		m = &imageMount{holders: map[string]bool{}}
		im.byImage[id] = m
	}
	m.holders[holder] = true
}

// release drops every reference holder has and unmounts the images no
// one holds any more. A holder with no references is not an error. An
// image whose unmount fails keeps the holder, so a retry releases again.
// store is only asked for when something must be unmounted.
func (im *imageMounts) release(store func() (imageMounter, error), holder string) error {
	im.mu.Lock()
	defer im.mu.Unlock()
	var errs []error
	for id, m := range im.byImage {
		if !m.holders[holder] {
			continue
		}
		if len(m.holders) > 1 {
			delete(m.holders, holder)
			continue
		}
		s, err := store()
		if err != nil {
			return err
		}
		// force: storage's count may include the mount a previous
		// daemon made; berth's holders are the only count that matters.
		if _, err := s.UnmountImage(id, true); err != nil && !errors.Is(err, storage.ErrImageUnknown) && !errors.Is(err, storage.ErrLayerUnknown) {
			errs = append(errs, fmt.Errorf("unmount image %s: %w", id, err))
			continue
		}
		delete(im.byImage, id)
	}
	return errors.Join(errs...)
}

// holders lists the holders of image id, sorted.
func (im *imageMounts) holders(id string) []string {
	im.mu.Lock()
	defer im.mu.Unlock()
	if m := im.byImage[id]; m != nil {
		return slices.Sorted(maps.Keys(m.holders))
	}
	return nil
}

// whileUnused runs f (the deletion of image id) unless a container holds
// the image, with no mount of it able to start meanwhile.
func (im *imageMounts) whileUnused(id string, f func() error) error {
	im.mu.Lock()
	defer im.mu.Unlock()
	if m := im.byImage[id]; m != nil && len(m.holders) > 0 {
		return fmt.Errorf("the image is mounted as a volume by container(s) %v: %w",
			slices.Sorted(maps.Keys(m.holders)), errdefs.ErrFailedPrecondition)
	}
	return f()
}

// MountImage mounts the image nameOrID read-only for container holder
// and returns where. The image must be in storage (errdefs.ErrNotFound
// otherwise): the kubelet pulls image volumes before it asks.
func (s *Service) MountImage(ctx context.Context, nameOrID, holder string) (*MountedImage, error) {
	info, err := s.ResolveNamed(ctx, nameOrID, "")
	if err != nil {
		return nil, err
	}
	store, err := s.Store()
	if err != nil {
		return nil, err
	}
	p, err := s.mounts.acquire(store, info.ID, holder)
	if err != nil {
		return nil, err
	}
	digest := info.RepoDigest
	if digest == "" {
		digest = info.ID
	}
	return &MountedImage{ID: info.ID, Digest: digest, Path: p}, nil
}

// ReleaseImages drops the image mounts container holder uses, unmounting
// the images nobody else does.
func (s *Service) ReleaseImages(holder string) error {
	return s.mounts.release(func() (imageMounter, error) { return s.Store() }, holder)
}

// AdoptImage re-takes, after a restart, the reference that container
// holder's record says it has on image id. Storage is not opened.
func (s *Service) AdoptImage(id, holder string) { s.mounts.adopt(id, holder) }

// maxSymlinks bounds the symlinks one sub path may follow (as the
// kernel's ELOOP limit does).
const maxSymlinks = 40

// SubPath resolves sub inside the mounted image at root as a container
// would see it: symlinks are followed, an absolute one from the image's
// root. A sub path that does not exist is errdefs.ErrNotFound; one that
// climbs above the image's root, by '..' or through a symlink, is
// errdefs.ErrInvalidArgument. securejoin would silently clamp such a
// path at the root instead of refusing it. The image is mounted
// read-only, so what is resolved here cannot change before it is
// bind-mounted.
func SubPath(root, sub string) (string, error) {
	rest := strings.Split(sub, "/")
	cur := "" // resolved so far, relative to root
	links := 0
	for len(rest) > 0 {
		part := rest[0]
		rest = rest[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			if cur == "" {
				return "", fmt.Errorf("image_sub_path %q leaves the image: %w", sub, errdefs.ErrInvalidArgument)
			}
			if cur = path.Dir(cur); cur == "." {
				cur = ""
			}
			continue
		}
		next := path.Join(cur, part)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				return "", fmt.Errorf("image_sub_path %q does not exist in the image: %w", sub, errdefs.ErrNotFound)
			}
			return "", fmt.Errorf("image_sub_path %q: %w", sub, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxSymlinks {
			return "", fmt.Errorf("image_sub_path %q: too many symlinks: %w", sub, errdefs.ErrInvalidArgument)
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", fmt.Errorf("image_sub_path %q: %w", sub, err)
		}
		if path.IsAbs(target) {
			cur = ""
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return filepath.Join(root, cur), nil
}
