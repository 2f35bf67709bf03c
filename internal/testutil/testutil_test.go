package testutil

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/directory"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/transports/alltransports"
	"go.podman.io/image/v5/types"
)

func digestOf(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestBusyboxImageDeterministic(t *testing.T) {
	spec := ImageSpec{Cmd: []string{"sleep", "1"}, ExtraLayers: []map[string]string{{"/a": "1", "b/c": "2"}}}
	d1, d2 := digestOf(t, BusyboxImage(t, spec)), digestOf(t, BusyboxImage(t, spec))
	if d1 != d2 {
		t.Fatalf("same spec, different digests: %s %s", d1, d2)
	}
	spec.Cmd = []string{"sleep", "2"}
	if d3 := digestOf(t, BusyboxImage(t, spec)); d3 == d1 {
		t.Fatalf("different specs, same digest %s", d1)
	}
}

// readAll reads the config and every layer of img, compressed and
// uncompressed; remote images verify digests while doing so.
func readAll(img v1.Image) error {
	if _, err := img.RawConfigFile(); err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		for _, open := range []func() (io.ReadCloser, error){l.Compressed, l.Uncompressed} {
			rc, err := open()
			if err != nil {
				return err
			}
			_, err = io.Copy(io.Discard, rc)
			if cerr := rc.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// entries flattens img into name -> header (with the content of small files
// in Header.PAXRecords["body"]).
func entries(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Size < 4096 {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			h.PAXRecords = map[string]string{"body": string(b)}
		}
		out[strings.TrimSuffix(h.Name, "/")] = h
	}
}

func TestBusyboxImageContents(t *testing.T) {
	spec := ImageSpec{
		User:         "app",
		Entrypoint:   []string{"/bin/sh", "-c"},
		Cmd:          []string{"echo hi"},
		Env:          []string{"FOO=bar"},
		WorkingDir:   "/srv/data",
		Labels:       map[string]string{"l": "v"},
		ExposedPorts: []string{"8080", "53/udp"},
		ExtraLayers: []map[string]string{
			{"/etc/motd": "hello\n", "/opt/run.sh": "#!/bin/sh\necho run\n"},
			{"/etc/.wh.motd": "", "/var/empty/": ""},
		},
	}
	img := BusyboxImage(t, spec)
	if err := readAll(img); err != nil {
		t.Fatalf("invalid image: %v", err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 3 {
		t.Fatalf("layers = %d, %v; want 3", len(layers), err)
	}
	fs := entries(t, img)
	host, err := os.Stat(HostBusybox)
	if err != nil {
		t.Fatal(err)
	}
	if h := fs["bin/busybox"]; h == nil || h.Size != host.Size() || h.Mode != 0o755 {
		t.Fatalf("bin/busybox = %+v", h)
	}
	for _, a := range []string{"sh", "ls", "sleep", "wget", "nc", "id"} {
		if h := fs["bin/"+a]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
			t.Errorf("bin/%s = %+v", a, h)
		}
	}
	if h := fs["tmp"]; h == nil || h.Mode != 0o1777 {
		t.Errorf("tmp = %+v", h)
	}
	if h := fs["home/app"]; h == nil || h.Uid != 1000 {
		t.Errorf("home/app = %+v", h)
	}
	if !strings.Contains(fs["etc/passwd"].PAXRecords["body"], "app:x:1000:1000:app:/home/app:") {
		t.Errorf("passwd = %q", fs["etc/passwd"].PAXRecords["body"])
	}
	for _, p := range []string{"srv/data", "var/empty", "etc/group", "proc", "dev", "sys"} {
		if fs[p] == nil {
			t.Errorf("%s missing", p)
		}
	}
	if fs["etc/motd"] != nil {
		t.Errorf("etc/motd survived its whiteout")
	}
	if h := fs["opt/run.sh"]; h == nil || h.Mode != 0o755 {
		t.Errorf("opt/run.sh = %+v", h)
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "app" || c.WorkingDir != "/srv/data" || c.Labels["l"] != "v" ||
		!slices.Equal(c.Entrypoint, spec.Entrypoint) || !slices.Equal(c.Cmd, spec.Cmd) ||
		!slices.Equal(c.Env, []string{DefaultPath, "FOO=bar"}) {
		t.Errorf("config = %+v", c)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok || len(c.ExposedPorts) != 2 {
		t.Errorf("exposed ports = %v", c.ExposedPorts)
	}
	if cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("platform = %s/%s", cf.OS, cf.Architecture)
	}

	def, err := BusyboxImage(t, ImageSpec{Env: []string{"PATH=/bin"}}).ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(def.Config.Cmd, []string{"/bin/sh"}) || !slices.Equal(def.Config.Env, []string{"PATH=/bin"}) {
		t.Errorf("default config = %+v", def.Config)
	}
}

// copyToDir copies src (a containers/image transport:reference) into a
// dir: destination with containers/image, as berth would read it.
func copyToDir(t *testing.T, src string, sys *types.SystemContext) (manifest.Manifest, error) {
	t.Helper()
	srcRef, err := alltransports.ParseImageName(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dstRef, err := directory.NewReference(dir)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := signature.NewPolicyContext(&signature.Policy{
		Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Destroy()
	raw, err := copy.Image(context.Background(), pc, dstRef, srcRef, &copy.Options{SourceCtx: sys})
	if err != nil {
		return nil, err
	}
	return manifest.FromBlob(raw, manifest.GuessMIMEType(raw))
}

func TestArchives(t *testing.T) {
	img := BusyboxImage(t, ImageSpec{Cmd: []string{"true"}})
	cfgName, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	docker := filepath.Join(dir, "docker.tar")
	SaveDockerArchive(t, img, docker, "example.com/app:v1")
	back, err := tarball.ImageFromPath(docker, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := back.ConfigName(); got != cfgName {
		t.Errorf("docker archive config %s, want %s", got, cfgName)
	}
	SaveDockerArchive(t, img, filepath.Join(dir, "untagged.tar"), "")

	lay := filepath.Join(dir, "layout")
	SaveOCILayout(t, img, lay, "v1")
	SaveOCILayout(t, BusyboxImage(t, ImageSpec{}), lay, "v2")
	idx, err := layout.ImageIndexFromPath(lay)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 2 || im.Manifests[0].Annotations[RefNameAnnotation] != "v1" ||
		im.Manifests[0].Digest != digestOf(t, img) {
		t.Fatalf("layout index = %+v, %v", im, err)
	}

	oci := filepath.Join(dir, "oci.tar")
	SaveOCIArchive(t, img, oci, "v1")

	for _, src := range []string{"docker-archive:" + docker, "oci:" + lay + ":v1", "oci-archive:" + oci + ":v1"} {
		m, err := copyToDir(t, src, nil)
		if err != nil {
			t.Errorf("containers/image cannot read %s: %v", src, err)
			continue
		}
		if m.ConfigInfo().Digest.String() != cfgName.String() {
			t.Errorf("%s: config %s, want %s", src, m.ConfigInfo().Digest, cfgName)
		}
	}
}

func TestEvilTarball(t *testing.T) {
	for _, kind := range []string{EvilDotDot, EvilAbsSymlink} {
		t.Run(kind, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "evil.tar")
			victim := EvilTarball(t, path, kind)
			if !strings.HasPrefix(victim, os.TempDir()+"/berth-escape-") {
				t.Fatalf("victim = %s", victim)
			}
			img, err := tarball.ImageFromPath(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			layers, err := img.Layers()
			if err != nil || len(layers) != 1 {
				t.Fatalf("layers: %d, %v", len(layers), err)
			}
			rc, err := layers[0].Uncompressed()
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			var names []string
			tr := tar.NewReader(rc)
			for h, err := tr.Next(); err == nil; h, err = tr.Next() {
				names = append(names, h.Name+"->"+h.Linkname)
			}
			joined := strings.Join(names, " ")
			want := map[string]string{EvilDotDot: "../../", EvilAbsSymlink: "escape->" + os.TempDir()}[kind]
			if !strings.Contains(joined, want) || !strings.Contains(joined, filepath.Base(victim)) {
				t.Fatalf("entries %q lack %q / %q", joined, want, filepath.Base(victim))
			}
			if _, err := os.Stat(victim); !os.IsNotExist(err) {
				t.Fatalf("victim %s exists before any import: %v", victim, err)
			}
		})
	}
}
