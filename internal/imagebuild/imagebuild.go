// Package imagebuild makes small OCI images offline from the host's
// busybox-static: berth's tests, the demo and the benchmark use it, since
// this kind of machine cannot pull from public registries.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// HostBusybox is the static busybox binary copied into every test image.
const HostBusybox = "/bin/busybox"

// DefaultPath is put in the image's Env unless Spec.Env sets PATH.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// epochUnix (2024-01-01T00:00:00Z) is the mtime of every tar entry and
// the image's creation time, so that one spec always yields one digest.
const epochUnix = 1704067200

func Epoch() time.Time { return time.Unix(epochUnix, 0).UTC() }

// Applets lists the busybox applets that get a /bin/<name> -> busybox
// symlink in the base layer.
const Applets = "[ awk basename cat chmod chown cp cut date dd df dirname du echo env " +
	"expr false find grep head hostname id ifconfig ip kill ln ls mkdir mkfifo " +
	"mknod mount mv nc nproc nslookup ping printf ps pwd readlink realpath rm " +
	"rmdir sed seq sh sleep sort stat sync sysctl tail tar tee test timeout top " +
	"touch tr true umount uname uniq wc wget which whoami xargs yes"

const passwd = `root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
`

const group = `root:x:0:
app:x:1000:
nogroup:x:65534:
`

// Spec describes an image. The zero value is a busybox image
// whose command is /bin/sh.
type Spec struct {
	// User is the config User, e.g. "1000", "app" or "1000:1000".
	User string
	// Entrypoint is the config Entrypoint.
	Entrypoint []string
	// Cmd is the config Cmd; ["/bin/sh"] when both Cmd and Entrypoint are empty.
	Cmd []string
	// Env is the config Env; DefaultPath is prepended unless it sets PATH.
	Env []string
	// WorkingDir is the config WorkingDir, also created (root, 0755) in the
	// base layer.
	WorkingDir string
	// Labels are the config Labels.
	Labels map[string]string
	// ExtraLayers adds one layer per map on top of the base layer. Each
	// map is path -> content. Files get mode 0644 (0755 when the content
	// starts with "#!"); a path ending in "/" makes a root-owned 0755
	// directory; a base name starting with ".wh." is an ordinary OCI
	// whiteout. Parent directories get no entries of their own (so /tmp
	// keeps its base-layer mode); unpackers create missing ones.
	ExtraLayers []map[string]string
	// ExposedPorts are "8080/tcp" style; "8080" means "8080/tcp".
	ExposedPorts []string
}

// Busybox builds a small single-platform OCI image from the host's
// busybox-static. The output is deterministic: equal specs give equal
// digests.
func Busybox(spec Spec) (v1.Image, error) {
	base, err := baseLayer(spec.WorkingDir)
	if err != nil {
		return nil, err
	}
	layers := []v1.Layer{base}
	for i, files := range spec.ExtraLayers {
		l, err := filesLayer(files)
		if err != nil {
			return nil, fmt.Errorf("extra layer %d: %w", i, err)
		}
		layers = append(layers, l)
	}
	return Assemble(layers, imageConfig(spec))
}

// Assemble stacks layers into a linux/GOARCH OCI image with config c and
// fixed timestamps.
func Assemble(layers []v1.Layer, c v1.Config) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	var err error
	for _, l := range layers {
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:   l,
			History: v1.History{Created: v1.Time{Time: Epoch()}, CreatedBy: "berth imagebuild"},
		})
		if err != nil {
			return nil, fmt.Errorf("append layer: %w", err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: Epoch()}
	cf.Architecture = runtime.GOARCH
	cf.OS = "linux"
	cf.Config = c
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return img, nil
}

func imageConfig(spec Spec) v1.Config {
	c := v1.Config{
		User:       spec.User,
		Entrypoint: spec.Entrypoint,
		Cmd:        spec.Cmd,
		WorkingDir: spec.WorkingDir,
		Labels:     spec.Labels,
	}
	if len(c.Cmd) == 0 && len(c.Entrypoint) == 0 {
		c.Cmd = []string{"/bin/sh"}
	}
	hasPath := false
	for _, e := range spec.Env {
		hasPath = hasPath || strings.HasPrefix(e, "PATH=")
	}
	if !hasPath {
		c.Env = append(c.Env, DefaultPath)
	}
	c.Env = append(c.Env, spec.Env...)
	if len(spec.ExposedPorts) > 0 {
		c.ExposedPorts = map[string]struct{}{}
		for _, p := range spec.ExposedPorts {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			c.ExposedPorts[p] = struct{}{}
		}
	}
	return c
}

// baseLayer holds busybox, its applet links, the usual directories and
// the passwd/group files.
func baseLayer(workDir string) (v1.Layer, error) {
	bb, err := os.ReadFile(HostBusybox)
	if err != nil {
		return nil, fmt.Errorf("read host busybox: %w", err)
	}
	tw := newTarBuilder()
	for _, d := range []string{"bin", "dev", "etc", "home", "proc", "sys", "usr", "usr/bin", "var", "var/tmp"} {
		tw.dir(d, 0o755, 0)
	}
	tw.dir("root", 0o700, 0)
	tw.dir("tmp", 0o1777, 0)
	tw.dir("home/app", 0o755, 1000)
	tw.file("bin/busybox", bb, 0o755)
	for _, a := range strings.Fields(Applets) {
		tw.symlink("bin/"+a, "busybox")
	}
	tw.symlink("usr/bin/env", "../../bin/busybox")
	tw.file("etc/passwd", []byte(passwd), 0o644)
	tw.file("etc/group", []byte(group), 0o644)
	if workDir != "" {
		tw.mkdirAll(workDir)
	}
	return tw.layer()
}

// filesLayer makes a layer of path -> content entries, sorted by path.
func filesLayer(files map[string]string) (v1.Layer, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := newTarBuilder()
	for _, n := range names {
		if strings.HasSuffix(n, "/") {
			tw.dir(n, 0o755, 0)
			continue
		}
		mode := int64(0o644)
		if strings.HasPrefix(files[n], "#!") {
			mode = 0o755
		}
		tw.file(n, []byte(files[n]), mode)
	}
	return tw.layer()
}

// clean turns an absolute or relative path into a tar entry name.
func clean(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

// tarBuilder writes a deterministic tar stream in memory. It remembers
// the first error and reports it from layer.
type tarBuilder struct {
	buf  bytes.Buffer
	tw   *tar.Writer
	dirs map[string]bool
	err  error
}

func newTarBuilder() *tarBuilder {
	b := &tarBuilder{dirs: map[string]bool{}}
	b.tw = tar.NewWriter(&b.buf)
	return b
}

func (b *tarBuilder) add(h *tar.Header, body []byte) {
	if b.err != nil {
		return
	}
	h.ModTime = Epoch()
	if err := b.tw.WriteHeader(h); err != nil {
		b.err = fmt.Errorf("tar header %s: %w", h.Name, err)
		return
	}
	if _, err := b.tw.Write(body); err != nil {
		b.err = fmt.Errorf("tar body %s: %w", h.Name, err)
	}
}

func (b *tarBuilder) dir(name string, mode int64, owner int) {
	name = clean(name)
	b.dirs[name] = true
	b.add(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: owner, Gid: owner}, nil)
}

// mkdirAll adds name and its missing parents as root-owned 0755 dirs.
func (b *tarBuilder) mkdirAll(name string) {
	name = clean(name)
	if name == "" || b.dirs[name] {
		return
	}
	b.mkdirAll(path.Dir(name))
	b.dir(name, 0o755, 0)
}

func (b *tarBuilder) file(name string, body []byte, mode int64) {
	b.add(&tar.Header{Typeflag: tar.TypeReg, Name: clean(name), Mode: mode, Size: int64(len(body))}, body)
}

func (b *tarBuilder) symlink(name, target string) {
	b.add(&tar.Header{Typeflag: tar.TypeSymlink, Name: clean(name), Linkname: target, Mode: 0o777}, nil)
}

// layer closes the tar stream, gzips it deterministically and wraps it
// as an OCI layer.
func (b *tarBuilder) layer() (v1.Layer, error) {
	if b.err != nil {
		return nil, b.err
	}
	if err := b.tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz) // zero Header: no name, mtime 0
	if _, err := zw.Write(b.buf.Bytes()); err != nil {
		return nil, fmt.Errorf("gzip layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip layer: %w", err)
	}
	data := gz.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("make layer: %w", err)
	}
	return l, nil
}

// RawEntry is one tar entry written exactly as given.
type RawEntry struct {
	Header *tar.Header
	Body   []byte
}

// RawLayer makes a layer from entries written as given, with no path
// cleaning: tests use it to build malicious layers.
func RawLayer(entries []RawEntry) (v1.Layer, error) {
	b := newTarBuilder()
	for _, e := range entries {
		b.add(e.Header, e.Body)
	}
	return b.layer()
}

// SaveDockerArchive writes img as a docker-archive (`docker save` format)
// to path, tagged ref; an empty ref records no tag.
func SaveDockerArchive(img v1.Image, path, ref string) error {
	var r name.Reference
	if ref == "" {
		d, err := img.Digest()
		if err != nil {
			return fmt.Errorf("image digest: %w", err)
		}
		if r, err = name.NewDigest("untagged@" + d.String()); err != nil {
			return fmt.Errorf("digest reference: %w", err)
		}
	} else {
		tag, err := name.NewTag(ref)
		if err != nil {
			return fmt.Errorf("parse tag %q: %w", ref, err)
		}
		r = tag
	}
	if err := tarball.WriteToFile(path, r, img); err != nil {
		return fmt.Errorf("write tarball: %w", err)
	}
	return nil
}
