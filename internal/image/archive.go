package image

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	ociv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker/archive"
	"go.podman.io/image/v5/docker/reference"
	ociarchive "go.podman.io/image/v5/oci/archive"
	ocilayout "go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/pkg/compression"
	"go.podman.io/image/v5/signature"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Archive formats Import understands.
const (
	FormatDockerArchive = "docker-archive"
	FormatOCIArchive    = "oci-archive"
	FormatOCILayout     = "oci"
)

// Import loads the image in path (a docker-archive or oci-archive
// tarball, possibly compressed, or an OCI layout directory) into storage
// as name. With an empty name, the archive's own name is used when it
// has exactly one (a docker-archive's RepoTags, an OCI ref.name that is
// a full name). Short names are stored under localhost/. The signature
// policy applies as for pulls. A failed import leaves no image, layer or
// temporary file behind.
func (s *Service) Import(ctx context.Context, path, name string) (*ImageInfo, error) {
	wrap := func(err error) error { return withKind(fmt.Errorf("import %s: %w", path, err)) }
	// A bad file is reported before storage is even opened.
	format, index, err := detectFormat(path)
	if err != nil {
		return nil, wrap(err)
	}
	store, err := s.Store()
	if err != nil {
		return nil, wrap(err)
	}
	cfg := s.config()
	sys := s.systemContext(cfg)
	src, archiveName, closeSrc, err := openArchive(sys, path, format, index)
	if err != nil {
		return nil, wrap(err)
	}
	defer closeSrc()
	if name == "" {
		name = archiveName
	}
	if name == "" {
		return nil, wrap(fmt.Errorf("the archive names no single image: give a name: %w", errdefs.ErrInvalidArgument))
	}
	named, err := qualify(name)
	if err != nil {
		return nil, wrap(err)
	}
	dst, err := istorage.Transport.NewStoreReference(store, named, "")
	if err != nil {
		return nil, wrap(err)
	}
	policy, err := policyContext(cfg.Berth.Image.SignaturePolicy)
	if err != nil {
		return nil, wrap(err)
	}
	defer policy.Destroy()

	before := s.janitor.begin(store)
	var resolved types.ImageReference
	_, err = copy.Image(ctx, policy, dst, src, &copy.Options{
		SourceCtx:               sys,
		DestinationCtx:          sys,
		ReportResolvedReference: &resolved,
	})
	s.janitor.end(store, before, err != nil, s.log)
	if err != nil {
		var policyErr signature.PolicyRequirementError
		if errors.As(err, &policyErr) {
			return nil, wrap(fmt.Errorf("image %s rejected by signature policy %s: %w", named, cfg.Berth.Image.SignaturePolicy, err))
		}
		return nil, wrap(fmt.Errorf("image %s: %w", named, err))
	}
	if resolved == nil {
		resolved = dst
	}
	_, img, err := istorage.ResolveReference(resolved)
	if err != nil {
		return nil, wrap(fmt.Errorf("find imported image %s: %w", named, err))
	}
	s.log.Info("imported image", "path", path, "image", named.String(), "id", img.ID)
	return s.describe(ctx, store, sys, img)
}

// openArchive returns the source reference of the single image in path
// (of a format detectFormat found), the image's name if the archive
// carries a usable one, and a cleanup function.
func openArchive(sys *types.SystemContext, path, format string, index []byte) (types.ImageReference, string, func(), error) {
	noop := func() {}
	switch format {
	case FormatDockerArchive:
		reader, err := archive.NewReader(sys, path)
		if err != nil {
			return nil, "", noop, fmt.Errorf("read docker-archive: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		closeReader := func() { reader.Close() }
		images, err := reader.List()
		if err != nil {
			closeReader()
			return nil, "", noop, fmt.Errorf("read docker-archive: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		if len(images) != 1 {
			closeReader()
			return nil, "", noop, fmt.Errorf("the docker-archive holds %d images, berth imports exactly one: %w", len(images), errdefs.ErrInvalidArgument)
		}
		ref := images[0][0]
		name := ""
		if len(images[0]) == 1 && ref.DockerReference() != nil {
			name = ref.DockerReference().String()
		}
		return ref, name, closeReader, nil
	case FormatOCIArchive, FormatOCILayout:
		var (
			ref types.ImageReference
			err error
		)
		if format == FormatOCIArchive {
			ref, err = ociarchive.NewReference(path, "")
		} else {
			ref, err = ocilayout.NewReference(path, "")
		}
		if err != nil {
			return nil, "", noop, fmt.Errorf("read %s: %v: %w", format, err, errdefs.ErrInvalidArgument)
		}
		return ref, ociRefName(index), noop, nil
	}
	return nil, "", noop, fmt.Errorf("unknown archive format %q: %w", format, errdefs.ErrInvalidArgument)
}

// ociRefName returns the ref.name annotation of a one-image OCI index
// when it is a full image name ("busybox:1.36", "quay.io/x/y:1"), not a
// bare tag ("latest"), which is all many tools write.
func ociRefName(indexJSON []byte) string {
	var index ociv1.Index
	if len(indexJSON) == 0 || json.Unmarshal(indexJSON, &index) != nil || len(index.Manifests) != 1 {
		return ""
	}
	n := index.Manifests[0].Annotations[ociv1.AnnotationRefName]
	if !strings.ContainsAny(n, ":/") {
		return ""
	}
	if _, err := reference.ParseNormalizedNamed(n); err != nil {
		return ""
	}
	return n
}

// maxIndexJSON bounds the index.json detectFormat keeps.
const maxIndexJSON = 1 << 20

// detectFormat tells an OCI layout directory, an oci-archive and a
// docker-archive apart by the files they hold, and returns the OCI
// index.json when there is one.
func detectFormat(path string) (string, []byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil, fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
		}
		return "", nil, err
	}
	if fi.IsDir() {
		if _, err := os.Stat(filepath.Join(path, ociv1.ImageLayoutFile)); err != nil {
			return "", nil, fmt.Errorf("directory is not an OCI image layout (no %s): %w", ociv1.ImageLayoutFile, errdefs.ErrInvalidArgument)
		}
		index, err := os.ReadFile(filepath.Join(path, ociv1.ImageIndexFile))
		if err != nil {
			return "", nil, fmt.Errorf("OCI layout: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		return FormatOCILayout, index, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	stream, _, err := compression.AutoDecompress(f)
	if err != nil {
		return "", nil, fmt.Errorf("not a tar archive: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	defer stream.Close()
	var ociLayout, dockerManifest bool
	var index []byte
	tr := tar.NewReader(stream)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", nil, fmt.Errorf("not a tar archive: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		switch strings.TrimPrefix(filepath.Clean("/"+h.Name), "/") {
		case ociv1.ImageLayoutFile:
			ociLayout = true
		case ociv1.ImageIndexFile:
			if index, err = io.ReadAll(io.LimitReader(tr, maxIndexJSON)); err != nil {
				return "", nil, fmt.Errorf("read index.json: %v: %w", err, errdefs.ErrInvalidArgument)
			}
		case "manifest.json":
			dockerManifest = true
		}
	}
	switch {
	case ociLayout:
		return FormatOCIArchive, index, nil
	case dockerManifest:
		return FormatDockerArchive, nil, nil
	}
	return "", nil, fmt.Errorf("neither a docker-archive (no manifest.json) nor an oci-archive (no oci-layout): %w", errdefs.ErrInvalidArgument)
}

// Export writes the image nameOrID to path as a docker-archive (the
// `docker save` format), tagged with the name it was asked by or its
// first tag. path must not exist; the archive appears there complete or
// not at all.
func (s *Service) Export(ctx context.Context, nameOrID, path string) error {
	wrap := func(err error) error { return withKind(fmt.Errorf("export %s to %s: %w", nameOrID, path, err)) }
	store, err := s.Store()
	if err != nil {
		return wrap(err)
	}
	sys := s.systemContext(s.config())
	m, err := lookup(store, sys, nameOrID)
	if err != nil {
		return wrap(err)
	}
	tag, err := exportTag(m)
	if err != nil {
		return wrap(err)
	}
	if _, err := os.Lstat(path); err == nil {
		return wrap(fmt.Errorf("%s exists: %w", path, errdefs.ErrAlreadyExists))
	}
	// Write next to the target and link it into place at the end, so a
	// failure or a crash never leaves a truncated archive under path.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".berth-export-*")
	if err != nil {
		return wrap(err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	dst, err := archive.NewReference(tmp.Name(), tag)
	if err != nil {
		return wrap(err)
	}
	src, err := istorage.Transport.NewStoreReference(store, nil, m.image.ID)
	if err != nil {
		return wrap(err)
	}
	// Exporting brings nothing onto the node, so the signature policy,
	// which governs what may come in, does not apply.
	policy, err := signature.NewPolicyContext(&signature.Policy{
		Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()},
	})
	if err != nil {
		return wrap(err)
	}
	defer policy.Destroy()
	if _, err := copy.Image(ctx, policy, dst, src, &copy.Options{SourceCtx: sys, DestinationCtx: sys}); err != nil {
		return wrap(err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return wrap(err)
	}
	s.log.Info("exported image", "image", nameOrID, "id", m.image.ID, "path", path)
	return nil
}

// exportTag picks the RepoTags entry of an export: the tag the image was
// named by, else its first tag; none for an untagged image.
func exportTag(m *match) (reference.NamedTagged, error) {
	if t, ok := m.name.(reference.NamedTagged); ok && !isDigested(m.name) {
		return t, nil
	}
	tags, _ := repoNames(m.image)
	if len(tags) == 0 {
		return nil, nil
	}
	named, err := reference.ParseNormalizedNamed(tags[0])
	if err != nil {
		return nil, err
	}
	t, _ := named.(reference.NamedTagged)
	return t, nil
}
