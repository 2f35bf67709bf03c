package ociext

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
)

type fixture struct {
	cdiDir, hookDir, mountsFile string
	x                           *Extensions
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{cdiDir: filepath.Join(dir, "cdi"), hookDir: filepath.Join(dir, "hooks"), mountsFile: filepath.Join(dir, "mounts.conf")}
	if err := os.MkdirAll(f.cdiDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Berth.Runtime.CDISpecDirs = []string{f.cdiDir}
	cfg.Berth.Runtime.HooksDirs = []string{f.hookDir}
	cfg.Berth.Runtime.DefaultMountsFile = f.mountsFile
	f.x = New(func() *config.Config { return cfg }, nil)
	t.Cleanup(f.x.Close)
	return f
}

func write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// nullSpec is a CDI spec whose device is the host's /dev/null under
// another name, with an env var and a mount.
const nullSpec = `cdiVersion: "0.6.0"
kind: berth.test/null
devices:
  - name: one
    containerEdits:
      deviceNodes:
        - path: /dev/berth-null
          hostPath: /dev/null
      env: ["BERTH_CDI=one"]
      mounts:
        - hostPath: /etc/hostname
          containerPath: /cdi/hostname
          options: ["ro", "bind"]
`

func baseSpec() *rspec.Spec {
	return &rspec.Spec{
		Process:     &rspec.Process{Args: []string{"/bin/sh"}, Env: []string{"PATH=/bin"}},
		Linux:       &rspec.Linux{Resources: &rspec.LinuxResources{}},
		Annotations: map[string]string{},
	}
}

func TestCDIInjectByFieldAndAnnotation(t *testing.T) {
	f := newFixture(t)
	write(t, filepath.Join(f.cdiDir, "null.yaml"), nullSpec)
	for name, req := range map[string]Request{
		"field":      {CDIDevices: []string{"berth.test/null=one"}},
		"annotation": {Annotations: map[string]string{"cdi.k8s.io/test": "berth.test/null=one"}},
	} {
		s := baseSpec()
		s.Annotations = req.Annotations
		if err := f.x.Apply(s, req); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/berth-null" || s.Linux.Devices[0].Major != 1 || s.Linux.Devices[0].Minor != 3 {
			t.Errorf("%s: devices %+v, want /dev/berth-null 1:3", name, s.Linux.Devices)
		}
		if !slices.Contains(s.Process.Env, "BERTH_CDI=one") {
			t.Errorf("%s: env %v", name, s.Process.Env)
		}
		if !slices.ContainsFunc(s.Mounts, func(m rspec.Mount) bool { return m.Destination == "/cdi/hostname" }) {
			t.Errorf("%s: mounts %+v", name, s.Mounts)
		}
		if !slices.ContainsFunc(s.Linux.Resources.Devices, func(d rspec.LinuxDeviceCgroup) bool {
			return d.Allow && d.Major != nil && *d.Major == 1 && d.Minor != nil && *d.Minor == 3
		}) {
			t.Errorf("%s: device cgroup rules %+v", name, s.Linux.Resources.Devices)
		}
	}
}

func TestInjectCDIDevicesByName(t *testing.T) {
	f := newFixture(t)
	write(t, filepath.Join(f.cdiDir, "null.yaml"), nullSpec)
	s := baseSpec()
	if err := f.x.InjectCDIDevices(s, []string{"berth.test/null=one"}); err != nil || len(s.Linux.Devices) != 1 {
		t.Errorf("inject: %v, devices %+v", err, s.Linux.Devices)
	}
	if err := f.x.InjectCDIDevices(baseSpec(), []string{"berth.test/null=two"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown: %v", err)
	}
}

func TestCDIUnknownAndMalformed(t *testing.T) {
	f := newFixture(t)
	write(t, filepath.Join(f.cdiDir, "null.yaml"), nullSpec)
	err := f.x.Apply(baseSpec(), Request{CDIDevices: []string{"berth.test/null=nope"}})
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "berth.test/null=nope") {
		t.Errorf("unknown device: %v, want not found naming it", err)
	}
	err = f.x.Apply(baseSpec(), Request{CDIDevices: []string{"not-a-cdi-name"}})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("malformed name: %v, want invalid argument", err)
	}
	err = f.x.Apply(baseSpec(), Request{Annotations: map[string]string{"cdi.k8s.io/x": "bad"}})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("malformed annotation: %v, want invalid argument", err)
	}
}

func TestCDIBrokenAndOutsideDevSpecsAreSkipped(t *testing.T) {
	f := newFixture(t)
	write(t, filepath.Join(f.cdiDir, "null.yaml"), nullSpec)
	write(t, filepath.Join(f.cdiDir, "broken.yaml"), "cdiVersion: [this is not\n")
	write(t, filepath.Join(f.cdiDir, "outside.yaml"), `cdiVersion: "0.6.0"
kind: berth.test/evil
devices:
  - name: passwd
    containerEdits:
      deviceNodes:
        - path: /etc/passwd
          hostPath: /dev/null
`)
	rep := f.x.Report().CDI
	if !slices.Equal(rep.Devices, []string{"berth.test/null=one"}) {
		t.Errorf("devices %v, want only berth.test/null=one", rep.Devices)
	}
	if len(rep.Errors[filepath.Join(f.cdiDir, "broken.yaml")]) == 0 {
		t.Errorf("errors %v: broken.yaml missing", rep.Errors)
	}
	if e := rep.Errors[filepath.Join(f.cdiDir, "outside.yaml")]; len(e) == 0 || !strings.Contains(e[0], "outside /dev") {
		t.Errorf("errors %v: outside.yaml not rejected", rep.Errors)
	}
	err := f.x.Apply(baseSpec(), Request{CDIDevices: []string{"berth.test/evil=passwd"}})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "outside /dev") {
		t.Errorf("device of a rejected spec: %v", err)
	}
	if err := f.x.Apply(baseSpec(), Request{CDIDevices: []string{"berth.test/null=one"}}); err != nil {
		t.Errorf("good device beside broken specs: %v", err)
	}
}

// waitFor polls cond: the dirs are watched, and the watcher's reload
// comes some moment after the write.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen within 10s", what)
		}
	}
}

func TestCDISpecAddedLaterIsPickedUp(t *testing.T) {
	f := newFixture(t)
	if d := f.x.Report().CDI.Devices; len(d) != 0 {
		t.Fatalf("devices %v before any spec", d)
	}
	write(t, filepath.Join(f.cdiDir, "null.yaml"), nullSpec)
	waitFor(t, "new CDI spec", func() bool { return len(f.x.Report().CDI.Devices) == 1 })
}

// A spec dir that does not exist yet (/etc/cdi on most nodes) is no
// error in the report, and its specs are found once it is made.
func TestCDIMissingSpecDirIsNoError(t *testing.T) {
	f := newFixture(t)
	if err := os.Remove(f.cdiDir); err != nil {
		t.Fatal(err)
	}
	f.x.Close()
	cfg := config.Default()
	cfg.Berth.Runtime.CDISpecDirs = []string{f.cdiDir}
	f.x = New(func() *config.Config { return cfg }, nil)
	t.Cleanup(f.x.Close)
	if rep := f.x.Report().CDI; len(rep.Errors) != 0 {
		t.Fatalf("errors for a spec dir that does not exist: %v", rep.Errors)
	}
	if err := os.MkdirAll(f.cdiDir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(f.cdiDir, "null.yaml"), nullSpec)
	waitFor(t, "spec in a dir made later", func() bool { return len(f.x.Report().CDI.Devices) == 1 })
}

func hookJSON(marker string) string {
	return `{"version": "1.0.0", "hook": {"path": "/bin/sh", "args": ["sh", "-c", "touch ` + marker + `"]},
 "when": {"annotations": {"^io\\.berth\\.test/hook$": "^yes$"}}, "stages": ["prestart"]}`
}

func TestHooksMatchByAnnotation(t *testing.T) {
	f := newFixture(t)
	f.x.Report() // loads: creates and watches the hook dir
	write(t, filepath.Join(f.hookDir, "10-marker.json"), hookJSON("/tmp/x"))
	write(t, filepath.Join(f.hookDir, "20-broken.json"), `{"version": "1.0.0", "hook": {"path": "/bin/sh"}}`)
	waitFor(t, "hooks loaded", func() bool {
		r := f.x.Report().Hooks
		return len(r.Hooks) == 1 && len(r.Errors) == 1
	})
	if e := f.x.Report().Hooks.Errors[filepath.Join(f.hookDir, "20-broken.json")]; !strings.Contains(e, "stages") {
		t.Errorf("broken hook error %q, want it to name the missing stages", e)
	}
	s := baseSpec()
	s.Annotations["io.berth.test/hook"] = "yes"
	if err := f.x.Apply(s, Request{Annotations: s.Annotations}); err != nil {
		t.Fatal(err)
	}
	if s.Hooks == nil || len(s.Hooks.CreateRuntime) != 1 || s.Hooks.CreateRuntime[0].Path != "/bin/sh" {
		t.Errorf("matching container: hooks %+v, want one createRuntime hook", s.Hooks)
	}
	other := baseSpec()
	other.Annotations["io.berth.test/hook"] = "no"
	if err := f.x.Apply(other, Request{Annotations: other.Annotations}); err != nil {
		t.Fatal(err)
	}
	if other.Hooks != nil {
		t.Errorf("other container: hooks %+v, want none", other.Hooks)
	}
	// The pod's annotations count too, over the container's.
	inPod := baseSpec()
	inPod.Annotations["io.berth.test/hook"] = "no"
	if err := f.x.Apply(inPod, Request{PodAnnotations: map[string]string{"io.berth.test/hook": "yes"}}); err != nil {
		t.Fatal(err)
	}
	if inPod.Hooks == nil || len(inPod.Hooks.CreateRuntime) != 1 {
		t.Errorf("container of an annotated pod: hooks %+v, want one", inPod.Hooks)
	}
	// ... but never ask for CDI devices.
	err := f.x.Apply(baseSpec(), Request{PodAnnotations: map[string]string{"cdi.k8s.io/x": "berth.test/none=x"}})
	if err != nil {
		t.Errorf("a pod's CDI annotation was acted on: %v", err)
	}
}

func TestDefaultMounts(t *testing.T) {
	f := newFixture(t)
	s := baseSpec()
	if err := f.x.Apply(s, Request{}); err != nil || len(s.Mounts) != 0 {
		t.Fatalf("no mounts.conf: %v, mounts %+v", err, s.Mounts)
	}
	src := t.TempDir()
	write(t, f.mountsFile, "# comment\n\n"+src+":/run/berth-default\nnot-a-mount\n/does/not/exist:/x\n/etc/hostname:/taken\n")
	s = baseSpec()
	s.Mounts = []rspec.Mount{{Destination: "/taken", Source: "/elsewhere", Type: "bind"}}
	if err := f.x.Apply(s, Request{}); err != nil {
		t.Fatal(err)
	}
	if len(s.Mounts) != 2 || s.Mounts[1].Destination != "/run/berth-default" || s.Mounts[1].Source != src || !slices.Contains(s.Mounts[1].Options, "ro") {
		t.Errorf("mounts %+v, want the request's /taken and a read-only /run/berth-default", s.Mounts)
	}
	rep := f.x.Report().DefaultMounts
	if len(rep.Mounts) != 3 || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], ":4:") {
		t.Errorf("report %+v", rep)
	}
}

// No CDI spec dirs means no CDI (not the cdi package's default dirs),
// and no hook dirs means no hooks.
func TestNoDirsConfigured(t *testing.T) {
	cfg := config.Default()
	cfg.Berth.Runtime.CDISpecDirs, cfg.Berth.Runtime.HooksDirs, cfg.Berth.Runtime.DefaultMountsFile = nil, nil, ""
	x := New(func() *config.Config { return cfg }, nil)
	t.Cleanup(x.Close)
	err := x.Apply(baseSpec(), Request{CDIDevices: []string{"berth.test/null=one"}})
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "cdi_spec_dirs") {
		t.Errorf("CDI device without spec dirs: %v", err)
	}
	s := baseSpec()
	if err := x.Apply(s, Request{}); err != nil || s.Hooks != nil || len(s.Mounts) != 0 {
		t.Errorf("nothing configured: %v, hooks %+v, mounts %+v", err, s.Hooks, s.Mounts)
	}
	if r := x.Report(); len(r.CDI.SpecDirs) != 0 || len(r.CDI.Devices) != 0 || len(r.Hooks.Dirs) != 0 {
		t.Errorf("report %+v", r)
	}
}

// The other "when" conditions reach the hooks package: hasBindMounts
// from the request, commands from the spec's process, always.
func TestHookConditions(t *testing.T) {
	f := newFixture(t)
	_, hooks := f.x.parts()
	write(t, filepath.Join(f.hookDir, "bind.json"), `{"version": "1.0.0", "hook": {"path": "/bin/true"}, "when": {"hasBindMounts": true}, "stages": ["poststop"]}`)
	write(t, filepath.Join(f.hookDir, "cmd.json"), `{"version": "1.0.0", "hook": {"path": "/bin/true"}, "when": {"commands": ["^/bin/sh$"]}, "stages": ["poststart"]}`)
	write(t, filepath.Join(f.hookDir, "all.json"), `{"version": "1.0.0", "hook": {"path": "/bin/true"}, "when": {"always": true}, "stages": ["createContainer", "startContainer"]}`)
	hooks.reload()
	s := baseSpec()
	if err := f.x.Apply(s, Request{HasBindMounts: true}); err != nil {
		t.Fatal(err)
	}
	if len(s.Hooks.Poststop) != 1 || len(s.Hooks.Poststart) != 1 || len(s.Hooks.CreateContainer) != 1 || len(s.Hooks.StartContainer) != 1 {
		t.Errorf("sh with bind mounts: hooks %+v", s.Hooks)
	}
	s = baseSpec()
	s.Process.Args = []string{"/bin/sleep"}
	if err := f.x.Apply(s, Request{}); err != nil {
		t.Fatal(err)
	}
	if len(s.Hooks.Poststop) != 0 || len(s.Hooks.Poststart) != 0 || len(s.Hooks.CreateContainer) != 1 {
		t.Errorf("sleep without bind mounts: hooks %+v", s.Hooks)
	}
}
