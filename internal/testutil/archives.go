package testutil

import (
	"archive/tar"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-cri/berth/internal/imagebuild"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// RefNameAnnotation names an image inside an OCI layout's index.json.
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// SaveOCILayout writes img into the OCI image layout directory dir,
// creating it or appending to an existing layout. A non-empty ref is
// stored verbatim as the org.opencontainers.image.ref.name annotation,
// so the image is reachable as oci:<dir>:<ref>.
func SaveOCILayout(t testing.TB, img v1.Image, dir, ref string) {
	t.Helper()
	if err := saveOCILayout(img, dir, ref); err != nil {
		t.Fatalf("save OCI layout %s: %v", dir, err)
	}
}

func saveOCILayout(img v1.Image, dir, ref string) error {
	p, err := layout.FromPath(dir)
	if err != nil {
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return fmt.Errorf("create layout: %w", err)
		}
	}
	var opts []layout.Option
	if ref != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{RefNameAnnotation: ref}))
	}
	if err := p.AppendImage(img, opts...); err != nil {
		return fmt.Errorf("append image: %w", err)
	}
	return nil
}

// SaveOCIArchive writes img as an oci-archive (an uncompressed tar of an
// OCI layout) to path; ref is the ref.name annotation as in SaveOCILayout.
func SaveOCIArchive(t testing.TB, img v1.Image, path, ref string) {
	t.Helper()
	dir := t.TempDir()
	if err := saveOCILayout(img, dir, ref); err != nil {
		t.Fatalf("save OCI archive %s: %v", path, err)
	}
	if err := tarDir(dir, path); err != nil {
		t.Fatalf("save OCI archive %s: %v", path, err)
	}
}

// SaveDockerArchive writes img as a docker-archive (`docker save` format)
// to path. ref is a tag like "busybox:1.36" or "127.0.0.1:5000/app:v1",
// recorded in RepoTags; an empty ref records no tag.
func SaveDockerArchive(t testing.TB, img v1.Image, path, ref string) {
	t.Helper()
	if err := imagebuild.SaveDockerArchive(img, path, ref); err != nil {
		t.Fatalf("save docker archive %s: %v", path, err)
	}
}

// tarDir writes the regular files and directories under dir into a tar
// file at dst, in lexical order with fixed mtimes.
func tarDir(dir, dst string) (err error) {
	f, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close %s: %w", dst, cerr)
		}
	}()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), ModTime: imagebuild.Epoch(), Mode: 0o644}
		if de.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
			return tw.WriteHeader(h)
		}
		fi, err := de.Info()
		if err != nil {
			return err
		}
		h.Typeflag, h.Size = tar.TypeReg, fi.Size()
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err != nil {
		return fmt.Errorf("tar %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("tar %s: %w", dir, err)
	}
	return nil
}

// Kinds of malicious layers understood by EvilImage and EvilTarball.
const (
	// EvilDotDot is a layer with a regular file whose name climbs out of
	// the rootfs with "../" components.
	EvilDotDot = "dotdot"
	// EvilAbsSymlink is a layer with a symlink pointing at an absolute
	// host directory, followed by a file written through that symlink.
	EvilAbsSymlink = "abs-symlink"
)

// EvilImage returns an image whose only layer tries to write outside the
// rootfs (kind EvilDotDot or EvilAbsSymlink), and the host path a broken
// unpacker would create. That path is unique per call and removed at
// cleanup; a test asserts it does not exist after the pull or import.
// The image is otherwise valid: digests and diff IDs match.
func EvilImage(t testing.TB, kind string) (v1.Image, string) {
	t.Helper()
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatalf("random name: %v", err)
	}
	base := "berth-escape-" + hex.EncodeToString(rnd[:])
	victim := filepath.Join(os.TempDir(), base)
	t.Cleanup(func() { os.RemoveAll(victim) })

	var entries []imagebuild.RawEntry
	payload := []byte("escaped\n")
	switch kind {
	case EvilDotDot:
		// Enough ".." to reach / from any plausible storage root.
		climb := strings.Repeat("../", 32)
		entries = append(entries, imagebuild.RawEntry{Header: &tar.Header{Typeflag: tar.TypeReg,
			Name: climb + strings.TrimPrefix(victim, "/"), Mode: 0o644, Size: int64(len(payload))}, Body: payload})
	case EvilAbsSymlink:
		entries = append(entries,
			imagebuild.RawEntry{Header: &tar.Header{Typeflag: tar.TypeSymlink, Name: "escape", Linkname: os.TempDir(), Mode: 0o777}},
			imagebuild.RawEntry{Header: &tar.Header{Typeflag: tar.TypeReg, Name: "escape/" + base,
				Mode: 0o644, Size: int64(len(payload))}, Body: payload})
	default:
		t.Fatalf("EvilImage: unknown kind %q (want %q or %q)", kind, EvilDotDot, EvilAbsSymlink)
	}
	l, err := imagebuild.RawLayer(entries)
	if err != nil {
		t.Fatalf("evil layer: %v", err)
	}
	img, err := imagebuild.Assemble([]v1.Layer{l}, v1.Config{Cmd: []string{"/escape"}})
	if err != nil {
		t.Fatalf("evil image: %v", err)
	}
	return img, victim
}

// EvilTarball writes a docker-archive tagged "evil:<kind>" holding
// EvilImage(t, kind) to path, and returns the host path that must not
// exist after importing it.
func EvilTarball(t testing.TB, path, kind string) string {
	t.Helper()
	img, victim := EvilImage(t, kind)
	SaveDockerArchive(t, img, path, "evil:"+kind)
	return victim
}
