package image

import (
	"errors"
	"fmt"
	"strings"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"

	"github.com/berth-cri/berth/internal/errdefs"
)

// dockerTransport is the only transport prefix berth accepts in a CRI
// image name; it is what CRI-O's default_transport spells.
const dockerTransport = "docker://"

// trimTransport strips an explicit docker:// prefix.
func trimTransport(name string) string {
	return strings.TrimPrefix(strings.TrimSpace(name), dockerTransport)
}

// fullID returns the bare image ID when s is a full 64-hex image ID,
// with or without "sha256:".
func fullID(s string) (string, bool) {
	id := strings.TrimPrefix(s, "sha256:")
	if len(id) == 64 && isHex(id) {
		return id, true
	}
	return "", false
}

func isHex(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return s != ""
}

// checkName validates an image name the way it will be resolved, so that
// a malformed name is an InvalidArgument before anything else happens.
func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("image name is empty: %w", errdefs.ErrInvalidArgument)
	}
	if strings.Contains(name, "://") {
		return fmt.Errorf("image %q: only the %s transport is supported: %w", name, dockerTransport, errdefs.ErrInvalidArgument)
	}
	if _, err := reference.ParseNormalizedNamed(name); err != nil {
		return fmt.Errorf("image %q is not a valid image name: %v: %w", name, err, errdefs.ErrInvalidArgument)
	}
	return nil
}

// qualify turns a user-given name for an imported image into
// a fully qualified tagged or digested name. Short names get the
// "localhost/" prefix, as podman does for images that come from no
// registry; lookups of the short name find them again (see lookup).
func qualify(name string) (reference.Named, error) {
	name = trimTransport(name)
	if err := checkName(name); err != nil {
		return nil, err
	}
	if isShortName(name) {
		name = "localhost/" + name
	}
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return nil, fmt.Errorf("image %q is not a valid image name: %v: %w", name, err, errdefs.ErrInvalidArgument)
	}
	return reference.TagNameOnly(named), nil
}

// match is what a lookup found: the image, and the name the request
// matched (nil when it matched by ID).
type match struct {
	image *storage.Image
	name  reference.Named
}

// lookup finds a local image by full ID, name (short names tried as
// localCandidates lists them), repo digest, or unique ID prefix. It wraps
// ErrNotFound when nothing matches.
func lookup(store storage.Store, sys *types.SystemContext, nameOrID string) (*match, error) {
	in := trimTransport(nameOrID)
	if in == "" {
		return nil, fmt.Errorf("image name is empty: %w", errdefs.ErrInvalidArgument)
	}
	if id, ok := fullID(in); ok {
		img, err := store.Image(id)
		if errors.Is(err, storage.ErrImageUnknown) {
			return nil, notFound(nameOrID)
		}
		if err != nil {
			return nil, fmt.Errorf("look up image %s: %w", id, err)
		}
		return &match{image: img}, nil
	}
	candidates, err := localCandidates(sys, in)
	if err != nil {
		if isHex(in) && errors.Is(err, errdefs.ErrInvalidArgument) {
			// Not a name, but maybe an ID prefix.
			return byIDPrefix(store, nameOrID, in)
		}
		return nil, err
	}
	for _, c := range candidates {
		img, err := byName(store, c)
		if err != nil {
			return nil, err
		}
		if img != nil {
			return &match{image: img, name: c}, nil
		}
	}
	if isHex(in) && len(in) >= 3 {
		return byIDPrefix(store, nameOrID, in)
	}
	return nil, notFound(nameOrID)
}

// byName finds the image a qualified tagged or digested name points at;
// nil when there is none.
func byName(store storage.Store, named reference.Named) (*storage.Image, error) {
	if d, ok := named.(reference.Digested); ok {
		imgs, err := store.ImagesByDigest(d.Digest())
		if err != nil && !errors.Is(err, storage.ErrImageUnknown) {
			return nil, fmt.Errorf("look up image %s: %w", named, err)
		}
		repo := named.Name()
		for _, img := range imgs {
			for _, n := range img.Names {
				if p, err := reference.ParseNormalizedNamed(n); err == nil && p.Name() == repo {
					return img, nil
				}
			}
		}
		return nil, nil
	}
	img, err := store.Image(named.String())
	if errors.Is(err, storage.ErrImageUnknown) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up image %s: %w", named, err)
	}
	return img, nil
}

func byIDPrefix(store storage.Store, orig, prefix string) (*match, error) {
	img, err := store.Image(prefix)
	if err != nil || !strings.HasPrefix(img.ID, prefix) {
		return nil, notFound(orig)
	}
	return &match{image: img}, nil
}

func notFound(name string) error {
	return fmt.Errorf("image %q: %w", name, errdefs.ErrNotFound)
}
