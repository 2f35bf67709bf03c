//go:build e2enode

package e2enode

import (
	"archive/tar"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/berth-cri/berth/internal/imagebuild"
)

// testImage is one image of the suite, built offline. Name is the public
// name the specs use (test/utils/image/manifest.go of v1.37.2, or
// test/e2e_node/image_list.go); registries.conf sends its registry to
// the run's own registry on 127.0.0.1, where it is pushed as Repo.
type testImage struct {
	Name string
	img  v1.Image
}

// Repo is the path the image is pushed under in the local registry: the
// public name with its registry host as the first path element, which is
// what registriesConf's rewrites map each public registry to.
func (i testImage) Repo() string { return i.Name }

// unbuildable are images the suite names that are not built here, each
// with why; specs using them fail or skip (docs/conformance.md).
var unbuildable = map[string]string{
	"registry.k8s.io/e2e-test-images/busybox@sha256:a9155b13325b2abef48e71de77bb8ac015412a566829f621d06bfae5c699b1b9": "pinned by digest: no offline build has that digest",
	"registry.k8s.io/e2e-test-images/perl:5.26":              "perl: not built (Debian's perl is not unpacked into layers)",
	"registry.k8s.io/e2e-test-images/ipc-utils:1.4":          "ipcmk (util-linux) is not in busybox",
	"gcr.io/cadvisor/cadvisor:v0.47.2":                       "cadvisor image: a separate project, only for [Serial] resource tracking",
	"registry.k8s.io/e2e-test-images/node-perf/npb-ep:1.6.0": "benchmark images: only for [Serial] node-perf specs",
	"registry.k8s.io/etcd:3.7.0-0":                           "only for [Serial]/[Slow] specs",
	"gcr.io/k8s-authenticated-test/agnhost:2.6":              "a private-registry image; left out on purpose so that pulls without credentials fail as the specs expect",
}

// e2eImages builds the images. bins is build.sh's output directory
// (agnhost, nnp); pauseBin is berth-pause.
func e2eImages(bins, pauseBin string) ([]testImage, error) {
	applets, err := appletLinks()
	if err != nil {
		return nil, err
	}
	busybox := func(spec imagebuild.Spec, extra ...v1.Layer) (v1.Image, error) {
		img, err := imagebuild.Busybox(spec)
		if err != nil {
			return nil, err
		}
		return appendLayers(img, append([]v1.Layer{applets}, extra...)...)
	}
	var certs []tarEntry
	for _, f := range []string{"localhost.crt", "localhost.key"} {
		b, err := os.ReadFile(filepath.Join(bins, f))
		if err != nil {
			return nil, fmt.Errorf("agnhost's porter certificate (build.sh copies it): %w", err)
		}
		certs = append(certs, tarEntry{fileHeader(f, string(b), 0o644), b})
	}
	agnhostLayer, err := binaryLayer(filepath.Join(bins, "agnhost"), "agnhost", 0o755, append(certs,
		// as in agnhost's Dockerfile: the agnhost-2 link, /uploads, a user
		// and group defined in the image (supplementalGroupsPolicy specs),
		// porter's certificate at / (https hook specs), curl, and OpenBSD's nc
		// (netcat-root) first on PATH.
		tarEntry{&tar.Header{Typeflag: tar.TypeSymlink, Name: "agnhost-2", Linkname: "agnhost", Mode: 0o777}, nil},
		tarEntry{&tar.Header{Typeflag: tar.TypeDir, Name: "uploads/", Mode: 0o755}, nil},
		tarEntry{fileHeader("etc/passwd", agnhostPasswd, 0o644), []byte(agnhostPasswd)},
		tarEntry{fileHeader("etc/group", agnhostGroup, 0o644), []byte(agnhostGroup)},
		tarEntry{&tar.Header{Typeflag: tar.TypeDir, Name: "usr/local/", Mode: 0o755}, nil},
		tarEntry{&tar.Header{Typeflag: tar.TypeDir, Name: "usr/local/bin/", Mode: 0o755}, nil},
		tarEntry{fileHeader("usr/local/bin/curl", curl, 0o755), []byte(curl)},
		tarEntry{&tar.Header{Typeflag: tar.TypeSymlink, Name: "usr/local/bin/nc", Linkname: "/bin/nc.openbsd", Mode: 0o777}, nil},
		// Debian's busybox sh runs its own applets before $PATH (nc
		// included); bash as sh finds OpenBSD's nc, as Alpine's sh does.
		tarEntry{&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/sh", Linkname: "bash", Mode: 0o777}, nil},
	)...)
	if err != nil {
		return nil, err
	}
	nnpLayer, err := binaryLayer(filepath.Join(bins, "nnp"), "usr/local/bin/nnp", 0o4755)
	if err != nil {
		return nil, err
	}
	pauseLayer, err := binaryLayer(pauseBin, "pause", 0o755)
	if err != nil {
		return nil, err
	}
	nginxRoot, err := dirLayer(filepath.Join(bins, "nginx-root"))
	if err != nil {
		return nil, err
	}
	nginxConf, err := imagebuild.RawLayer([]imagebuild.RawEntry{
		{Header: fileHeader("etc/nginx/nginx.conf", nginxConf, 0o644), Body: []byte(nginxConf)},
		{Header: &tar.Header{Typeflag: tar.TypeDir, Name: "run/", Mode: 0o755}},
		{Header: &tar.Header{Typeflag: tar.TypeSymlink, Name: "var/run", Linkname: "/run", Mode: 0o777}},
	})
	if err != nil {
		return nil, err
	}
	hostnameRoot, err := dirLayer(filepath.Join(bins, "hostname-root"))
	if err != nil {
		return nil, err
	}
	netcatRoot, err := dirLayer(filepath.Join(bins, "netcat-root"))
	if err != nil {
		return nil, err
	}
	nsswitch, err := imagebuild.RawLayer([]imagebuild.RawEntry{
		{Header: fileHeader("etc/nsswitch.conf", nsswitchConf, 0o644), Body: []byte(nsswitchConf)}})
	if err != nil {
		return nil, err
	}
	nginx := imagebuild.Spec{Cmd: []string{"nginx", "-g", "daemon off;"}, ExposedPorts: []string{"80"}}
	const e2eReg = "registry.k8s.io/e2e-test-images/"
	specs := []struct {
		name  string
		spec  imagebuild.Spec
		extra []v1.Layer
	}{
		{e2eReg + "busybox:1.37.0-2", imagebuild.Spec{Cmd: []string{"sh"}}, nil},
		// the busybox of test/e2e_node/util.go's pod helpers
		{e2eReg + "busybox:1.37.0-1", imagebuild.Spec{Cmd: []string{"sh"}}, nil},
		{"docker.io/library/busybox:1.29-2", imagebuild.Spec{Cmd: []string{"sh"}}, nil},
		{"docker.io/library/busybox:latest", imagebuild.Spec{Cmd: []string{"sh"}}, nil},
		{e2eReg + "agnhost:2.66.1", imagebuild.Spec{Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"},
			ExposedPorts: []string{"80", "8080", "8081", "9376", "5000"}}, []v1.Layer{netcatRoot, agnhostLayer}},
		{e2eReg + "agnhost:2.55", imagebuild.Spec{Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"},
			ExposedPorts: []string{"80", "8080", "8081", "9376", "5000"}}, []v1.Layer{netcatRoot, agnhostLayer}},
		{e2eReg + "nginx:1.27.0-2", nginx, []v1.Layer{nginxRoot, nginxConf}},
		{e2eReg + "nginx:1.28.0-2", nginx, []v1.Layer{nginxRoot, nginxConf}},
		// glibc's hostname over busybox's: hostname -f asks glibc's resolver
		// (/etc/hosts first), as in the upstream Debian-based image.
		{e2eReg + "glibc-dns-testing:2.1.1", imagebuild.Spec{Cmd: []string{"sh"}}, []v1.Layer{hostnameRoot, nsswitch}},
		{e2eReg + "nonewprivs:1.4", imagebuild.Spec{Cmd: []string{"nnp"}}, []v1.Layer{nnpLayer}},
		{e2eReg + "nonroot:1.5", imagebuild.Spec{User: "1234"}, nil},
		{"registry.k8s.io/pause:3.10.2", imagebuild.Spec{Entrypoint: []string{"/pause"}}, []v1.Layer{pauseLayer}},
	}
	var out []testImage
	for _, s := range specs {
		img, err := busybox(s.spec, s.extra...)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", s.name, err)
		}
		out = append(out, testImage{Name: s.name, img: img})
	}
	return out, nil
}

// nginxConf serves /usr/share/nginx/html on port 80 and writes its pid
// to /var/run/nginx.pid, as the upstream nginx image does (a host-PID
// spec reads it); logs go to the container's stdout and stderr.
const nginxConf = `user nobody nogroup;
worker_processes 1;
pid /var/run/nginx.pid;
error_log /dev/stderr notice;
events { worker_connections 256; }
http {
	include /etc/nginx/mime.types;
	access_log /dev/stdout;
	server {
		listen 80 default_server;
		root /usr/share/nginx/html;
		index index.html;
	}
}
`

const nsswitchConf = "hosts: files dns\n"

// nmeter stands in for busybox's nmeter, which Debian's busybox build
// lacks, for the one use the suite makes of it: `nmeter -d0 '%3t' | head
// -n1` for the time of day with milliseconds (HH:MM:SS.mmm). adjtimex
// reads the clock with sub-second precision (nanoseconds when the status
// has STA_NANO, 8192).
const nmeter = `#!/bin/sh
while :; do
	adjtimex | awk '/status:/ { nano = int($2 / 8192) % 2 } /tv_sec/ { s = $2 } /tv_usec/ { f = $2 }
		END { printf "%s %03d\n", s, nano ? int(f / 1000000) : int(f / 1000) }' | {
		read -r s ms
		echo "$(date -u -d "@$s" +%T).$ms"
	} || exit 0
done
`

// curl stands in for the curl of the upstream agnhost image (Alpine's)
// for the uses the suite makes of it: `curl [-g -q -s ...] [--max-time N]
// [--connect-timeout N] URL` (exec hooks, node-to-pod networking checks),
// through busybox wget.
const curl = `#!/bin/sh
t=
while [ $# -gt 1 ]; do
	case $1 in
	--max-time | -m) t=$2; shift 2 ;;
	--connect-timeout) shift 2 ;;
	-*) shift ;;
	*) break ;;
	esac
done
exec wget -q -O - ${t:+-T "$t"} "$@"
`

const agnhostPasswd = "root:x:0:0:root:/root:/bin/sh\n" +
	"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n" +
	"user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n"

const agnhostGroup = "root:x:0:\nnogroup:x:65534:\n" +
	"user-defined-in-image:x:1000:\n" +
	"group-defined-in-image:x:50000:user-defined-in-image\n"

// tarEntry is one entry of a layer.
type tarEntry struct {
	h    *tar.Header
	body []byte
}

func fileHeader(name, body string, mode int64) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body))}
}

// binaryLayer is a layer holding the file src at dst with mode, then more.
func binaryLayer(src, dst string, mode int64, more ...tarEntry) (v1.Layer, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return nil, fmt.Errorf("read %s (built by test/e2enode/build/build.sh): %w", src, err)
	}
	entries := []imagebuild.RawEntry{}
	if dir := filepath.Dir(dst); dir != "." {
		for _, d := range parents(dir) {
			entries = append(entries, imagebuild.RawEntry{Header: &tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}})
		}
	}
	entries = append(entries, imagebuild.RawEntry{Header: &tar.Header{Typeflag: tar.TypeReg, Name: dst, Mode: mode, Size: int64(len(b))}, Body: b})
	for _, e := range more {
		entries = append(entries, imagebuild.RawEntry{Header: e.h, Body: e.body})
	}
	return imagebuild.RawLayer(entries)
}

// dirLayer is a layer of the tree below root (files, directories and
// symlinks as they are, owned by root), e.g. unpacked .debs.
func dirLayer(root string) (v1.Layer, error) {
	var entries []imagebuild.RawEntry
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if d.Type()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name, h.Uid, h.Gid, h.Uname, h.Gname = rel, 0, 0, "", ""
		var body []byte
		switch {
		case d.IsDir():
			h.Name += "/"
		case d.Type().IsRegular():
			if body, err = os.ReadFile(p); err != nil {
				return err
			}
		}
		entries = append(entries, imagebuild.RawEntry{Header: h, Body: body})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("layer of %s (built by test/e2enode/build/build.sh): %w", root, err)
	}
	return imagebuild.RawLayer(entries)
}

// parents returns "a", "a/b", "a/b/c" for "a/b/c".
func parents(dir string) []string {
	var out []string
	parts := strings.Split(dir, "/")
	for i := range parts {
		out = append(out, strings.Join(parts[:i+1], "/"))
	}
	return out
}

// appletLinks links every applet of the host's busybox into /bin (the
// base layer links only a common subset): the suite's commands assume a
// full busybox, as in the upstream busybox image.
func appletLinks() (v1.Layer, error) {
	out, err := exec.Command(imagebuild.HostBusybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", imagebuild.HostBusybox, err)
	}
	var entries []imagebuild.RawEntry
	for _, a := range strings.Fields(string(out)) {
		if a == "busybox" {
			continue
		}
		entries = append(entries, imagebuild.RawEntry{Header: &tar.Header{
			Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777}})
	}
	entries = append(entries, imagebuild.RawEntry{Header: fileHeader("bin/nmeter", nmeter, 0o755), Body: []byte(nmeter)})
	return imagebuild.RawLayer(entries)
}

// appendLayers puts layers on top of img.
func appendLayers(img v1.Image, layers ...v1.Layer) (v1.Image, error) {
	return mutate.AppendLayers(img, layers...)
}
