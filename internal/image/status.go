package image

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	ociv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker/reference"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
)

// ImageInfo describes one local image.
type ImageInfo struct {
	// ID is the storage image ID: the hex digest of the image config,
	// without "sha256:".
	ID string
	// RepoTags are the image's tagged names, fully qualified
	// ("docker.io/library/busybox:latest").
	RepoTags []string
	// RepoDigests are repo@digest for every repository the image is
	// named in and every manifest digest it was pulled by.
	RepoDigests []string
	// Size is the bytes the image uses in storage.
	Size uint64
	// UID is the numeric user of the image config's USER, when numeric;
	// Username the user name otherwise. Both unset for an empty USER.
	UID      *int64
	Username string
	// Pinned reports whether pinned_images matches the image.
	Pinned bool
	// Config is the image config in OCI form (user, env, entrypoint,
	// cmd, working dir, volumes, labels, stop signal).
	Config ociv1.Image
	// TopLayer is the storage layer a container's writable layer goes on.
	TopLayer string
	// Digest is the manifest digest the image was stored with.
	Digest digest.Digest
	// Tag and RepoDigest name the image as it was resolved: the tag the
	// name matched and "<repository of the name>@<digest>", for a
	// container to report the repository it was created from when the
	// image is stored under several. After a lookup by ID they are the
	// first of RepoTags and RepoDigests; empty when there is none.
	Tag, RepoDigest string
}

// Resolve finds a local image by ID, ID prefix, name or repo digest and
// describes it. Short names are tried as alias, localhost/, each
// unqualified-search registry, then docker.io. It wraps
// errdefs.ErrNotFound when no image matches, errdefs.ErrInvalidArgument
// for a malformed name.
func (s *Service) Resolve(ctx context.Context, nameOrID string) (*ImageInfo, error) {
	store, err := s.Store()
	if err != nil {
		return nil, err
	}
	cfg := s.config()
	sys := s.systemContext(cfg)
	m, err := lookup(store, sys, nameOrID)
	if err != nil {
		return nil, err
	}
	return s.describeMatch(ctx, store, sys, m)
}

// ResolveNamed is Resolve for the image a container is created from.
// When nameOrID gives an ID, as the kubelet does once it has pulled,
// userSpecified (the CRI's user_specified_image, the name in the pod
// spec) sets Tag and RepoDigest if it names the same image.
func (s *Service) ResolveNamed(ctx context.Context, nameOrID, userSpecified string) (*ImageInfo, error) {
	store, err := s.Store()
	if err != nil {
		return nil, err
	}
	sys := s.systemContext(s.config())
	m, err := lookup(store, sys, nameOrID)
	if err != nil {
		return nil, err
	}
	if m.name == nil && userSpecified != "" {
		if um, err := lookup(store, sys, userSpecified); err == nil && um.image.ID == m.image.ID {
			m.name = um.name
		}
	}
	return s.describeMatch(ctx, store, sys, m)
}

// describeMatch describes the image a lookup found, named as it matched.
func (s *Service) describeMatch(ctx context.Context, store storage.Store, sys *types.SystemContext, m *match) (*ImageInfo, error) {
	info, err := s.describe(ctx, store, sys, m.image)
	if err != nil {
		return nil, err
	}
	if len(info.RepoTags) > 0 {
		info.Tag = info.RepoTags[0]
	}
	if len(info.RepoDigests) > 0 {
		info.RepoDigest = info.RepoDigests[0]
	}
	if m.name == nil {
		return info, nil
	}
	if t, ok := m.name.(reference.NamedTagged); ok && slices.Contains(info.RepoTags, t.String()) {
		info.Tag = t.String()
	}
	if d, ok := m.name.(reference.Digested); ok {
		info.RepoDigest = m.name.Name() + "@" + d.Digest().String()
		return info, nil
	}
	// RepoDigests lists each repository with its digests, the stored
	// manifest digest first.
	if i := slices.IndexFunc(info.RepoDigests, func(rd string) bool { return strings.HasPrefix(rd, m.name.Name()+"@") }); i >= 0 {
		info.RepoDigest = info.RepoDigests[i]
	}
	return info, nil
}

// List describes every local image, or with a non-empty filter only the
// image the filter resolves to (the CRI's ImageFilter).
func (s *Service) List(ctx context.Context, filter string) ([]*ImageInfo, error) {
	if filter != "" {
		info, err := s.Resolve(ctx, filter)
		if err != nil {
			if isNotFound(err) {
				return nil, nil
			}
			return nil, err
		}
		return []*ImageInfo{info}, nil
	}
	store, err := s.Store()
	if err != nil {
		return nil, err
	}
	images, err := store.Images()
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	sys := s.systemContext(s.config())
	out := make([]*ImageInfo, 0, len(images))
	for i := range images {
		info, err := s.describe(ctx, store, sys, &images[i])
		if err != nil {
			// An image removed while listing is simply not listed.
			if isNotFound(err) {
				continue
			}
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// describe builds the ImageInfo of a storage image.
func (s *Service) describe(ctx context.Context, store storage.Store, sys *types.SystemContext, img *storage.Image) (*ImageInfo, error) {
	info := &ImageInfo{ID: img.ID, TopLayer: img.TopLayer, Digest: img.Digest}
	info.RepoTags, info.RepoDigests = repoNames(img)
	size, err := store.ImageSize(img.ID)
	if err != nil {
		return nil, wrapStorageErr(fmt.Sprintf("size of image %s", img.ID), err)
	}
	info.Size = uint64(max(size, 0))
	oci, err := s.imageConfig(ctx, store, sys, img.ID)
	if err != nil {
		return nil, err
	}
	info.Config = *oci
	info.UID, info.Username = userOf(oci.Config.User)
	info.Pinned = pinned(s.config().Berth.Image.Pins(), img.ID, info.RepoTags, info.RepoDigests)
	return info, nil
}

// imageConfig reads an image's config through containers/image, which
// converts Docker configs to OCI, and caches it by ID.
func (s *Service) imageConfig(ctx context.Context, store storage.Store, sys *types.SystemContext, id string) (*ociv1.Image, error) {
	s.cfgMu.Lock()
	c, ok := s.configs[id]
	s.cfgMu.Unlock()
	if ok {
		return c, nil
	}
	ref, err := istorage.Transport.NewStoreReference(store, nil, id)
	if err != nil {
		return nil, fmt.Errorf("reference image %s: %w", id, err)
	}
	img, err := ref.NewImage(ctx, sys)
	if err != nil {
		return nil, wrapStorageErr("open image "+id, err)
	}
	defer img.Close()
	c, err = img.OCIConfig(ctx)
	if err != nil {
		return nil, wrapStorageErr("read config of image "+id, err)
	}
	s.cfgMu.Lock()
	s.configs[id] = c
	s.cfgMu.Unlock()
	return c, nil
}

// forget drops a removed image from the config cache.
func (s *Service) forget(id string) {
	s.cfgMu.Lock()
	delete(s.configs, id)
	s.cfgMu.Unlock()
}

// repoNames splits a storage image's names into tags and digests, and
// adds repo@digest for every repository and manifest digest it has.
func repoNames(img *storage.Image) (tags, digests []string) {
	var repos []string
	for _, n := range img.Names {
		named, err := reference.ParseNormalizedNamed(n)
		if err != nil {
			continue
		}
		if !slices.Contains(repos, named.Name()) {
			repos = append(repos, named.Name())
		}
		switch named.(type) {
		case reference.Digested:
			digests = append(digests, n)
		case reference.Tagged:
			tags = append(tags, n)
		}
	}
	var ds []digest.Digest
	if img.Digest != "" {
		ds = append(ds, img.Digest)
	}
	for _, d := range img.Digests {
		if !slices.Contains(ds, d) {
			ds = append(ds, d)
		}
	}
	for _, r := range repos {
		for _, d := range ds {
			if rd := r + "@" + d.String(); !slices.Contains(digests, rd) {
				digests = append(digests, rd)
			}
		}
	}
	return tags, digests
}

// userOf maps a config USER ("1000", "1000:1000", "app", "app:app") to
// the CRI's uid or username; the group part does not matter here.
func userOf(user string) (*int64, string) {
	u, _, _ := strings.Cut(user, ":")
	if u == "" {
		return nil, ""
	}
	if uid, err := strconv.ParseInt(u, 10, 64); err == nil {
		return &uid, ""
	}
	return nil, u
}

// pinned reports whether pinned_images matches the image by ID, tag or
// repo digest.
func pinned(patterns []string, id string, tags, digests []string) bool {
	names := append(append([]string{id, "sha256:" + id}, tags...), digests...)
	return matchesPin(patterns, names)
}

// matchesPin reports whether a pattern matches one of names: an exact
// name (normalized, so "busybox:1.36" matches
// "docker.io/library/busybox:1.36"), or a glob whose only wildcard is a
// trailing '*', matched against fully qualified names.
func matchesPin(patterns, names []string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			for _, n := range names {
				if strings.HasPrefix(n, prefix) {
					return true
				}
			}
			continue
		}
		exact := []string{p}
		if named, err := reference.ParseNormalizedNamed(p); err == nil {
			exact = append(exact, reference.TagNameOnly(named).String())
		}
		for _, n := range names {
			if slices.Contains(exact, n) {
				return true
			}
		}
	}
	return false
}
