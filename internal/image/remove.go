package image

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/storage"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Remove removes an image by ID, ID prefix, tag or repo digest.
//
// A tag of an image that has other names (tags, or repo@digest names it
// was pulled by) is only untagged, as CRI-O does. Anything else (an ID,
// an ID prefix, a digest, an image's last name) deletes the image, which is
// refused with errdefs.ErrFailedPrecondition when the image is pinned,
// a container in storage uses it, or a container mounts it as a volume.
// A missing image wraps errdefs.ErrNotFound (the CRI handler treats
// that as done, as the CRI asks removal to be idempotent).
func (s *Service) Remove(ctx context.Context, nameOrID string) error {
	store, err := s.Store()
	if err != nil {
		return err
	}
	cfg := s.config()
	m, err := lookup(store, s.systemContext(cfg), nameOrID)
	if err != nil {
		return fmt.Errorf("remove image: %w", err)
	}
	img := m.image
	patterns := cfg.Berth.Image.Pins()
	tags, digests := repoNames(img)

	if tagged, ok := m.name.(reference.NamedTagged); ok && !isDigested(m.name) {
		tag := tagged.String()
		if others := slices.DeleteFunc(slices.Clone(img.Names), func(n string) bool { return sameName(n, tag) }); len(others) > 0 {
			if matchesPin(patterns, []string{tag}) {
				return fmt.Errorf("remove image %s: tag %s is pinned by pinned_images or pause_image: %w", nameOrID, tag, errdefs.ErrFailedPrecondition)
			}
			if err := store.RemoveNames(img.ID, []string{tag}); err != nil {
				if goneMidRemoval(err) {
					return fmt.Errorf("untag image: %w", notFound(nameOrID))
				}
				return wrapStorageErr(fmt.Sprintf("untag image %s (%s)", img.ID, tag), err)
			}
			s.log.Info("untagged image", "image", tag, "id", img.ID, "names_left", others)
			return nil
		}
	}

	what := "remove image " + nameOrID
	if !strings.HasPrefix(img.ID, strings.TrimPrefix(nameOrID, "sha256:")) {
		what += " (" + img.ID + ")"
	}
	if pinned(patterns, img.ID, tags, digests) {
		return fmt.Errorf("%s: the image is pinned by pinned_images or pause_image: %w", what, errdefs.ErrFailedPrecondition)
	}
	err = s.mounts.whileUnused(img.ID, func() error {
		_, err := store.DeleteImage(img.ID, true)
		return err
	})
	if err != nil {
		if errors.Is(err, errdefs.ErrFailedPrecondition) {
			return fmt.Errorf("%s: %w", what, err)
		}
		if errors.Is(err, storage.ErrImageUsedByContainer) {
			return fmt.Errorf("%s: %s: %w", what, usersOf(store, img.ID), errdefs.ErrFailedPrecondition)
		}
		if goneMidRemoval(err) {
			return fmt.Errorf("remove image: %w", notFound(nameOrID))
		}
		return wrapStorageErr(what, err)
	}
	s.forget(img.ID)
	s.log.Info("removed image", "image", nameOrID, "id", img.ID, "tags", tags)
	return nil
}

// goneMidRemoval reports whether storage failed because the image went
// away after it was looked up: a concurrent removal of the same image
// won. storage says so with ErrNotAnImage when the image vanished while
// it held its lock, and ErrImageUnknown when it was gone before.
func goneMidRemoval(err error) bool {
	return errors.Is(err, storage.ErrImageUnknown) || errors.Is(err, storage.ErrNotAnImage)
}

// sameName reports whether a stored name is the fully qualified tag.
// Names are stored normalized; an unparsable one is compared as is.
func sameName(stored, tag string) bool {
	if named, err := reference.ParseNormalizedNamed(stored); err == nil {
		return named.String() == tag
	}
	return stored == tag
}

func isDigested(n reference.Named) bool {
	_, ok := n.(reference.Digested)
	return ok
}

// usersOf names the containers that keep an image, for the error message.
func usersOf(store storage.Store, id string) string {
	containers, err := store.Containers()
	if err != nil {
		return "the image is in use by a container"
	}
	var ids []string
	for _, c := range containers {
		if c.ImageID == id {
			ids = append(ids, c.ID)
		}
	}
	if len(ids) == 0 {
		return "the image is in use by a container"
	}
	return fmt.Sprintf("the image is in use by container(s) %v", ids)
}
