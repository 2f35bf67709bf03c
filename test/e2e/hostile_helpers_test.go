package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/imagebuild"
	"github.com/berth-cri/berth/internal/testutil"
)

// hostFiles are host files an escaping container or a confused berthd
// would change first.
var hostFiles = []string{
	"/etc/passwd", "/etc/group", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname",
	"/proc/sys/kernel/core_pattern", "/proc/sys/kernel/shm_rmid_forced",
	"/proc/sys/kernel/msgmax", "/proc/sys/net/ipv4/ip_forward",
}

// hostView is what the attack suite compares before and after an
// attack: the host files above and every file under the victim dir
// (path and content digest), the host's mount points, and the processes
// whose command line names the attack's marker.
type hostView struct {
	files  map[string]string
	mounts []string
	procs  []string
}

// hostGuard watches one attack: victim is a host directory (with a
// canary file) that hostile images and requests aim at; marker is a
// string the attack's processes carry in their command lines.
type hostGuard struct {
	victim, marker string
	before         hostView
}

func newHostGuard(t *testing.T) *hostGuard {
	t.Helper()
	victim, err := os.MkdirTemp("", "berth-victim-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(victim) })
	if err := os.WriteFile(filepath.Join(victim, "canary"), []byte("untouched\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := &hostGuard{victim: victim, marker: "hostile" + strconv.Itoa(os.Getpid()) + filepath.Base(victim)}
	g.before = g.view(t)
	return g
}

func (g *hostGuard) view(t *testing.T) hostView {
	t.Helper()
	v := hostView{files: map[string]string{}}
	digest := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:8]) }
	for _, p := range hostFiles {
		b, err := os.ReadFile(p)
		if err != nil {
			v.files[p] = "unreadable: " + err.Error()
			continue
		}
		v.files[p] = digest(b)
	}
	filepath.WalkDir(g.victim, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return nil
		}
		entry := fi.Mode().String()
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			entry += " " + digest(b)
		}
		v.files[p] = entry
		return nil
	})
	for _, line := range strings.Split(readFile(t, "/proc/self/mountinfo"), "\n") {
		if f := strings.Fields(line); len(f) > 4 {
			v.mounts = append(v.mounts, f[4])
		}
	}
	sort.Strings(v.mounts)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmd, []byte(g.marker)) {
			v.procs = append(v.procs, e.Name()+" "+string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
		}
	}
	return v
}

// assertUntouched compares the host with what it was when the guard was
// made. Call it after the attack's objects are removed.
func (g *hostGuard) assertUntouched(t *testing.T) {
	t.Helper()
	after := g.view(t)
	for p, was := range g.before.files {
		if now, ok := after.files[p]; !ok || now != was {
			t.Errorf("host file %s changed: %q -> %q", p, was, now)
		}
	}
	for p, now := range after.files {
		if _, ok := g.before.files[p]; !ok {
			t.Errorf("host file %s appeared (%s)", p, now)
		}
	}
	if strings.Join(g.before.mounts, "\n") != strings.Join(after.mounts, "\n") {
		t.Errorf("host mounts changed:\nbefore: %q\nafter:  %q", g.before.mounts, after.mounts)
	}
	if len(after.procs) > 0 {
		t.Errorf("attack processes left on the host: %q", after.procs)
	}
}

// hostileEnv is a ctrEnv whose registry also serves hostile images.
type hostileEnv struct {
	*ctrEnv
	guard *hostGuard
}

// startHostileEnv starts the env, then takes the host's picture: the
// env's own mounts (pod namespaces, storage) are part of it.
func startHostileEnv(t *testing.T) *hostileEnv {
	t.Helper()
	e := startCtrEnv(t)
	return &hostileEnv{ctrEnv: e, guard: newHostGuard(t)}
}

// imageName turns a subtest name into a repository name.
func imageName(prefix, name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else if s := b.String(); s != "" && s[len(s)-1] != '-' {
			b.WriteByte('-')
		}
	}
	return prefix + "/" + strings.Trim(b.String(), "-") + ":1"
}

// push puts img in the registry under name and returns its reference.
func (e *hostileEnv) push(t *testing.T, name string, img v1.Image) string {
	t.Helper()
	e.reg.Push(t, name, img)
	return e.reg.Ref(name)
}

// pull pulls ref, returning the error.
func (e *hostileEnv) pull(t *testing.T, ref string) error {
	t.Helper()
	_, err := e.d.Images.PullImage(ctxT(t, 2*time.Minute), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	return err
}

// busyboxWith is the busybox image with config changes and raw layers
// on top (entries written exactly as given).
func busyboxWith(t *testing.T, spec testutil.ImageSpec, mutate func(*v1.Config), raw ...[]imagebuild.RawEntry) v1.Image {
	t.Helper()
	base := testutil.BusyboxImage(t, spec)
	layers, err := base.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, entries := range raw {
		l, err := imagebuild.RawLayer(entries)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	cf, err := base.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if mutate != nil {
		mutate(&c)
	}
	img, err := imagebuild.Assemble(layers, c)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func rawFile(name, body string) imagebuild.RawEntry {
	return imagebuild.RawEntry{Header: &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}, Body: []byte(body)}
}

func rawDir(name string) imagebuild.RawEntry {
	return imagebuild.RawEntry{Header: &tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}

func rawSymlink(name, target string) imagebuild.RawEntry {
	return imagebuild.RawEntry{Header: &tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

// runAndWait runs a container to its exit and returns its log lines'
// messages (stdout and stderr).
func (e *hostileEnv) runAndWait(t *testing.T, cfg *runtimeapi.ContainerConfig) (string, *runtimeapi.ContainerStatus) {
	t.Helper()
	id := e.run(t, cfg)
	st := e.waitExited(t, id, time.Minute)
	var out strings.Builder
	for _, l := range logLines(t, st.GetLogPath()) {
		_, msg, _ := strings.Cut(l, " ")
		_, msg, _ = strings.Cut(msg, " ")
		fmt.Fprintln(&out, msg)
	}
	e.remove(t, id)
	return out.String(), st
}

// assertRSSBack waits for berthd's RSS to come back within 10 MB of
// base, failing if it does not within a minute.
func assertRSSBack(t *testing.T, d *testutil.Daemon, baseKB int, what string) {
	t.Helper()
	pid := d.Cmd.Process.Pid
	deadline := time.Now().Add(time.Minute)
	for {
		now := rssKB(pid)
		if now <= baseKB+10*1024 {
			t.Logf("%s: berthd RSS %d KiB (baseline %d KiB)", what, now, baseKB)
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: berthd RSS %d KiB stays above its baseline %d KiB + 10 MB", what, now, baseKB)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// assertNoPanic fails if berthd's log shows a recovered panic.
func assertNoPanic(t *testing.T, d *testutil.Daemon) {
	t.Helper()
	if log := d.Log(); strings.Contains(log, "panic") {
		for _, l := range strings.Split(log, "\n") {
			if strings.Contains(l, "panic") {
				t.Errorf("berthd log shows a panic: %.2000s", l)
			}
		}
	}
}
