package spec

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	ociv1 "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

const testPasswd = `root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
web:x:1001:1001::/srv/web:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
`

const testGroup = `root:x:0:
app:x:1000:
web:x:1001:
audio:x:29:app,web
video:x:44:app
nogroup:x:65534:
`

var nineCaps = []string{"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "SETGID", "SETUID", "SETPCAP", "NET_BIND_SERVICE", "KILL"}

// rootfs makes a root filesystem with the test passwd and group files.
func rootfs(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(root, "etc/passwd"), testPasswd)
	write(t, filepath.Join(root, "etc/group"), testGroup)
	return root
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fullHost is a host that can do everything.
func fullHost() *Host {
	return &Host{
		Bounding:       capsFromMask(1<<41 - 1),
		Controllers:    map[string]bool{"cpu": true, "cpuacct": true, "cpuset": true, "memory": true, "pids": true, "hugetlb": true, "devices": true},
		SwapAccounting: true,
	}
}

// thisHost is a host like the one berth's CI runs on: no
// CAP_SYS_RESOURCE, no hugetlb, cgroup v1, no AppArmor.
func thisHost() *Host {
	h := fullHost()
	delete(h.Bounding, "CAP_SYS_RESOURCE")
	delete(h.Controllers, "hugetlb")
	return h
}

func input(t *testing.T, cfg *runtimeapi.ContainerConfig) *Input {
	if cfg.Metadata == nil {
		cfg.Metadata = &runtimeapi.ContainerMetadata{Name: "c"}
	}
	return &Input{
		ID:     "0123456789abcdef",
		Config: cfg,
		Image: ociv1.ImageConfig{
			Env:        []string{"PATH=/bin", "FROM_IMAGE=1", "OVERRIDE=image"},
			Entrypoint: []string{"/entry"},
			Cmd:        []string{"default-arg"},
			WorkingDir: "/work",
		},
		Sandbox: Sandbox{
			ID: "pod1", Hostname: "podhost",
			NetNS: "/run/berth/ns/net/pod1", IPCNS: "/run/berth/ns/ipc/pod1", UTSNS: "/run/berth/ns/uts/pod1",
			CgroupParent: "/kubepods/pod1", ShmPath: "/run/berth/shm/pod1",
			ResolvConfPath: "/run/berth/pods/pod1/resolv.conf", HostnamePath: "/run/berth/pods/pod1/hostname",
			HostsPath: "/run/berth/pods/pod1/hosts",
		},
		RootFS:  rootfs(t),
		Host:    thisHost(),
		Options: Options{DefaultCaps: nineCaps, CgroupManager: "cgroupfs"},
	}
}

func gen(t *testing.T, in *Input) *Result {
	t.Helper()
	res, err := Generate(in)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return res
}

func genErr(t *testing.T, in *Input, kind error) error {
	t.Helper()
	_, err := Generate(in)
	if err == nil {
		t.Fatal("Generate succeeded; want an error")
	}
	if !errors.Is(err, kind) {
		t.Fatalf("error %q is not %v", err, kind)
	}
	return err
}

func secCtx(cfg *runtimeapi.ContainerConfig) *runtimeapi.LinuxContainerSecurityContext {
	if cfg.Linux == nil {
		cfg.Linux = &runtimeapi.LinuxContainerConfig{}
	}
	if cfg.Linux.SecurityContext == nil {
		cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{}
	}
	return cfg.Linux.SecurityContext
}

func TestCommandMerge(t *testing.T) {
	for _, tc := range []struct {
		name          string
		command, args []string
		want          []string
	}{
		{"image only", nil, nil, []string{"/entry", "default-arg"}},
		{"args replace cmd", nil, []string{"a", "b"}, []string{"/entry", "a", "b"}},
		{"command drops cmd", []string{"/bin/x"}, nil, []string{"/bin/x"}},
		{"command and args", []string{"/bin/x"}, []string{"y"}, []string{"/bin/x", "y"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := gen(t, input(t, &runtimeapi.ContainerConfig{Command: tc.command, Args: tc.args}))
			if !slices.Equal(res.Spec.Process.Args, tc.want) {
				t.Fatalf("args %q, want %q", res.Spec.Process.Args, tc.want)
			}
		})
	}
	in := input(t, &runtimeapi.ContainerConfig{})
	in.Image.Entrypoint, in.Image.Cmd = nil, nil
	genErr(t, in, errdefs.ErrInvalidArgument)
}

func TestEnv(t *testing.T) {
	res := gen(t, input(t, &runtimeapi.ContainerConfig{Envs: []*runtimeapi.KeyValue{
		{Key: "OVERRIDE", Value: []byte("request")}, {Key: "NEW", Value: []byte("x=y")},
	}}))
	want := []string{"PATH=/bin", "FROM_IMAGE=1", "OVERRIDE=request", "NEW=x=y", "HOSTNAME=podhost", "HOME=/root"}
	if !slices.Equal(res.Spec.Process.Env, want) {
		t.Fatalf("env %q, want %q", res.Spec.Process.Env, want)
	}
	// PATH defaults; HOME comes from the user's passwd entry.
	in := input(t, &runtimeapi.ContainerConfig{})
	in.Image.Env = nil
	secCtx(in.Config).RunAsUser = &runtimeapi.Int64Value{Value: 1001}
	res = gen(t, in)
	if !slices.Contains(res.Spec.Process.Env, defaultPath) || !slices.Contains(res.Spec.Process.Env, "HOME=/srv/web") {
		t.Fatalf("env %q lacks the default PATH or HOME", res.Spec.Process.Env)
	}
	for _, bad := range []*runtimeapi.KeyValue{
		{Key: "HOME", Value: []byte("/root\nEVIL=1")},
		{Key: "A\nB", Value: []byte("x")},
		{Key: "A=B", Value: []byte("x")},
		{Key: "", Value: []byte("x")},
		{Key: "NUL", Value: []byte("a\x00b")},
	} {
		genErr(t, input(t, &runtimeapi.ContainerConfig{Envs: []*runtimeapi.KeyValue{bad}}), errdefs.ErrInvalidArgument)
	}
	in = input(t, &runtimeapi.ContainerConfig{})
	in.Image.Env = []string{"HOME=/x\nEVIL=1"}
	genErr(t, in, errdefs.ErrInvalidArgument)
}

// TestEnvValueWithNewline: a Secret or ConfigMap value ending in a newline
// reaches the process verbatim, as the kubelet's conformance specs
// ("Secrets should be consumable via the environment") expect; only HOME
// may not hold one.
func TestEnvValueWithNewline(t *testing.T) {
	in := input(t, &runtimeapi.ContainerConfig{Envs: []*runtimeapi.KeyValue{
		{Key: "SECRET_DATA", Value: []byte("value-1\n")}, {Key: "MULTI", Value: []byte("a\r\nb")},
	}})
	in.Image.Env = append(in.Image.Env, "FROM_IMAGE_MULTI=x\ny")
	res := gen(t, in)
	for _, want := range []string{"SECRET_DATA=value-1\n", "MULTI=a\r\nb", "FROM_IMAGE_MULTI=x\ny"} {
		if !slices.Contains(res.Spec.Process.Env, want) {
			t.Errorf("env %q lacks %q", res.Spec.Process.Env, want)
		}
	}
}

func TestWorkingDir(t *testing.T) {
	res := gen(t, input(t, &runtimeapi.ContainerConfig{}))
	if res.Spec.Process.Cwd != "/work" {
		t.Fatalf("cwd %q, want the image's /work", res.Spec.Process.Cwd)
	}
	res = gen(t, input(t, &runtimeapi.ContainerConfig{WorkingDir: "/data/"}))
	if res.Spec.Process.Cwd != "/data" {
		t.Fatalf("cwd %q, want /data", res.Spec.Process.Cwd)
	}
	for _, bad := range []string{"/proc/self/fd/7", "/proc", "relative", "/a/../../etc", "/x\ny"} {
		genErr(t, input(t, &runtimeapi.ContainerConfig{WorkingDir: bad}), errdefs.ErrInvalidArgument)
	}
	in := input(t, &runtimeapi.ContainerConfig{})
	in.Image.WorkingDir = "/proc/self/fd/8"
	genErr(t, in, errdefs.ErrInvalidArgument)
}

func capSet(t *testing.T, res *Result) []string {
	t.Helper()
	c := res.Spec.Process.Capabilities
	if !slices.Equal(c.Bounding, c.Effective) || !slices.Equal(c.Bounding, c.Permitted) {
		t.Fatalf("bounding/effective/permitted differ: %+v", c)
	}
	return c.Bounding
}

func TestCapabilities(t *testing.T) {
	res := gen(t, input(t, &runtimeapi.ContainerConfig{}))
	got := capSet(t, res)
	if len(got) != 9 || !slices.Contains(got, "CAP_KILL") || slices.Contains(got, "CAP_NET_RAW") {
		t.Fatalf("default caps %q", got)
	}
	if c := res.Spec.Process.Capabilities; len(c.Inheritable) != 0 || len(c.Ambient) != 0 {
		t.Fatalf("inheritable/ambient not empty: %+v", c)
	}
	for _, tc := range []struct {
		name      string
		add, drop []string
		has, not  []string
		n         int
	}{
		{"add and drop", []string{"net_admin", "CAP_SYS_PTRACE"}, []string{"KILL"}, []string{"CAP_NET_ADMIN", "CAP_SYS_PTRACE"}, []string{"CAP_KILL"}, 10},
		{"drop all add one", []string{"CHOWN"}, []string{"ALL"}, []string{"CAP_CHOWN"}, nil, 1},
		{"add all drop one", []string{"ALL"}, []string{"CHOWN"}, []string{"CAP_SYS_ADMIN", "CAP_BPF"}, []string{"CAP_CHOWN", "CAP_SYS_RESOURCE"}, 39},
		{"drop all", nil, []string{"ALL"}, nil, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &runtimeapi.ContainerConfig{}
			secCtx(cfg).Capabilities = &runtimeapi.Capability{AddCapabilities: tc.add, DropCapabilities: tc.drop}
			res := gen(t, input(t, cfg))
			got := capSet(t, res)
			if len(got) != tc.n {
				t.Fatalf("%d caps %q, want %d", len(got), got, tc.n)
			}
			for _, c := range tc.has {
				if !slices.Contains(got, c) {
					t.Errorf("missing %s", c)
				}
			}
			for _, c := range tc.not {
				if slices.Contains(got, c) {
					t.Errorf("unexpected %s", c)
				}
			}
		})
	}
	// add ALL on a host without CAP_SYS_RESOURCE: adapted, not failed.
	cfg := &runtimeapi.ContainerConfig{}
	secCtx(cfg).Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"ALL"}}
	res = gen(t, input(t, cfg))
	if slices.Contains(capSet(t, res), "CAP_SYS_RESOURCE") || len(res.Adapted) == 0 {
		t.Fatalf("CAP_SYS_RESOURCE granted or not reported: %q", res.Adapted)
	}
	cfg = &runtimeapi.ContainerConfig{}
	secCtx(cfg).Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"CAP_NOPE"}}
	genErr(t, input(t, cfg), errdefs.ErrInvalidArgument)
	// Ambient capabilities need the inheritable set too.
	cfg = &runtimeapi.ContainerConfig{}
	secCtx(cfg).Capabilities = &runtimeapi.Capability{AddAmbientCapabilities: []string{"NET_BIND_SERVICE"}}
	res = gen(t, input(t, cfg))
	if c := res.Spec.Process.Capabilities; !slices.Equal(c.Ambient, []string{"CAP_NET_BIND_SERVICE"}) || !slices.Equal(c.Inheritable, c.Ambient) {
		t.Fatalf("ambient %+v", c)
	}
}

func TestPrivileged(t *testing.T) {
	cfg := &runtimeapi.ContainerConfig{}
	sc := secCtx(cfg)
	sc.Privileged = true
	sc.MaskedPaths = []string{"/proc/kcore"}
	sc.ReadonlyPaths = []string{"/proc/sys"}
	in := input(t, cfg)
	in.Host.Devices = []Device{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229, FileMode: 0o666}}
	res := gen(t, in)
	s := res.Spec
	if len(capSet(t, res)) != 40 || slices.Contains(s.Process.Capabilities.Bounding, "CAP_SYS_RESOURCE") {
		t.Fatalf("privileged caps %q", s.Process.Capabilities.Bounding)
	}
	if s.Linux.Seccomp != nil || len(s.Linux.MaskedPaths) != 0 || len(s.Linux.ReadonlyPaths) != 0 {
		t.Fatal("privileged container has seccomp or masked/readonly paths")
	}
	if r := s.Linux.Resources.Devices; len(r) != 1 || !r[0].Allow {
		t.Fatalf("device rules %+v, want allow all", r)
	}
	if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/fuse" {
		t.Fatalf("devices %+v", s.Linux.Devices)
	}
	for _, m := range s.Mounts {
		if m.Destination == "/sys" && !slices.Contains(m.Options, "rw") {
			t.Fatalf("/sys is not rw: %v", m.Options)
		}
	}
}

func TestMaskedPathsAsSent(t *testing.T) {
	cfg := &runtimeapi.ContainerConfig{}
	sc := secCtx(cfg)
	sc.MaskedPaths = []string{"/proc/kcore", "/proc/keys"}
	sc.ReadonlyPaths = []string{"/proc/sys"}
	sc.ReadonlyRootfs = true
	sc.NoNewPrivs = true
	res := gen(t, input(t, cfg))
	s := res.Spec
	if !slices.Equal(s.Linux.MaskedPaths, sc.MaskedPaths) || !slices.Equal(s.Linux.ReadonlyPaths, sc.ReadonlyPaths) {
		t.Fatalf("masked %q readonly %q", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	if !s.Root.Readonly || !s.Process.NoNewPrivileges {
		t.Fatal("readonly rootfs or no_new_privs not set")
	}
}

func findMount(s *specs.Spec, dst string) *specs.Mount {
	for i := range s.Mounts {
		if s.Mounts[i].Destination == dst {
			return &s.Mounts[i]
		}
	}
	return nil
}

func TestMounts(t *testing.T) {
	src := t.TempDir()
	cfg := &runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{
		{ContainerPath: "/data", HostPath: src, Readonly: true},
		{ContainerPath: "/shared/", HostPath: src, Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL},
		{ContainerPath: "/slave", HostPath: src, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
		{ContainerPath: "/etc/hosts", HostPath: filepath.Join(src)},
	}}
	res := gen(t, input(t, cfg))
	s := res.Spec
	m := findMount(s, "/data")
	if m == nil || m.Type != "bind" || !slices.Contains(m.Options, "ro") || !slices.Contains(m.Options, "rprivate") {
		t.Fatalf("/data mount %+v", m)
	}
	if slices.Contains(m.Options, "rro") {
		t.Fatalf("plain read-only /data is recursive: %+v", m)
	}
	// recursive_read_only is runc's rro on top of ro.
	rro := &runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{{ContainerPath: "/r", HostPath: src, Readonly: true, RecursiveReadOnly: true}}}
	if m := findMount(gen(t, input(t, rro)).Spec, "/r"); m == nil || !slices.Contains(m.Options, "ro") || !slices.Contains(m.Options, "rro") {
		t.Fatalf("recursive read-only mount %+v", m)
	}
	if m := findMount(s, "/shared"); m == nil || !slices.Contains(m.Options, "rshared") {
		t.Fatalf("/shared mount %+v", m)
	}
	if m := findMount(s, "/slave"); m == nil || !slices.Contains(m.Options, "rslave") {
		t.Fatalf("/slave mount %+v", m)
	}
	if s.Linux.RootfsPropagation != "rshared" {
		t.Fatalf("rootfs propagation %q", s.Linux.RootfsPropagation)
	}
	// The request's /etc/hosts replaces the pod's.
	if m := findMount(s, "/etc/hosts"); m == nil || m.Source != src {
		t.Fatalf("/etc/hosts %+v", m)
	}
	if m := findMount(s, "/etc/resolv.conf"); m == nil || m.Source != "/run/berth/pods/pod1/resolv.conf" {
		t.Fatalf("/etc/resolv.conf %+v", m)
	}
	if m := findMount(s, "/dev/shm"); m == nil || m.Source != "/run/berth/shm/pod1" {
		t.Fatalf("/dev/shm %+v", m)
	}
	// Parents before children.
	last := -1
	for _, m := range s.Mounts {
		if d := depth(m.Destination); d < last {
			t.Fatalf("mounts not sorted by depth: %v", s.Mounts)
		} else {
			last = d
		}
	}
	for _, bad := range []*runtimeapi.Mount{
		{ContainerPath: "/x", HostPath: filepath.Join(src, "does-not-exist")},
		{ContainerPath: "/a/../../etc", HostPath: src},
		{ContainerPath: "relative", HostPath: src},
		{ContainerPath: "/x", HostPath: "relative"},
		{ContainerPath: "/x", HostPath: src, RecursiveReadOnly: true},
		{ContainerPath: "/x", HostPath: src, Readonly: true, RecursiveReadOnly: true, Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL},
	} {
		genErr(t, input(t, &runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{bad}}), errdefs.ErrInvalidArgument)
	}
	if _, err := os.Stat(filepath.Join(src, "does-not-exist")); err == nil {
		t.Fatal("a missing mount source was created")
	}
	// No pod shm: a private tmpfs.
	in := input(t, &runtimeapi.ContainerConfig{})
	in.Sandbox.ShmPath = ""
	if m := findMount(gen(t, in).Spec, "/dev/shm"); m == nil || m.Type != "tmpfs" {
		t.Fatalf("/dev/shm %+v", m)
	}
}

func TestImageVolumes(t *testing.T) {
	in := input(t, &runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{{ContainerPath: "/covered", HostPath: t.TempDir()}}})
	in.Image.Volumes = map[string]struct{}{"/var/data": {}, "/covered": {}, "/b/": {}}
	res := gen(t, in)
	if !slices.Equal(res.Volumes, []string{"/b", "/var/data"}) {
		t.Fatalf("volumes %q", res.Volumes)
	}
	in.Image.Volumes = map[string]struct{}{"/../../etc": {}}
	genErr(t, in, errdefs.ErrInvalidArgument)
}

func TestNamespaces(t *testing.T) {
	nsOf := func(s *specs.Spec) map[specs.LinuxNamespaceType]string {
		m := map[specs.LinuxNamespaceType]string{}
		for _, n := range s.Linux.Namespaces {
			m[n.Type] = n.Path
		}
		return m
	}
	res := gen(t, input(t, &runtimeapi.ContainerConfig{}))
	ns := nsOf(res.Spec)
	if ns[specs.NetworkNamespace] != "/run/berth/ns/net/pod1" || ns[specs.IPCNamespace] != "/run/berth/ns/ipc/pod1" ||
		ns[specs.UTSNamespace] != "/run/berth/ns/uts/pod1" {
		t.Fatalf("namespaces %v", ns)
	}
	if p, ok := ns[specs.PIDNamespace]; !ok || p != "" {
		t.Fatalf("pid namespace %q %v, want a new one (POD default is CONTAINER)", p, ok)
	}
	if _, ok := ns[specs.MountNamespace]; !ok {
		t.Fatal("no mount namespace")
	}
	mode := func(pid runtimeapi.NamespaceMode, target string) *runtimeapi.ContainerConfig {
		cfg := &runtimeapi.ContainerConfig{}
		secCtx(cfg).NamespaceOptions = &runtimeapi.NamespaceOption{Pid: pid, TargetId: target}
		return cfg
	}
	in := input(t, mode(runtimeapi.NamespaceMode_POD, ""))
	in.Sandbox.PIDNS = "/proc/42/ns/pid"
	if p := nsOf(gen(t, in).Spec)[specs.PIDNamespace]; p != "/proc/42/ns/pid" {
		t.Fatalf("POD pid ns %q", p)
	}
	if p := nsOf(gen(t, input(t, mode(runtimeapi.NamespaceMode_POD, ""))).Spec)[specs.PIDNamespace]; p != "" {
		t.Fatalf("POD pid ns without a shared one: %q", p)
	}
	in = input(t, mode(runtimeapi.NamespaceMode_CONTAINER, ""))
	in.Sandbox.PIDNS = "/proc/42/ns/pid"
	if p := nsOf(gen(t, in).Spec)[specs.PIDNamespace]; p != "" {
		t.Fatalf("CONTAINER pid ns joined %q", p)
	}
	if _, ok := nsOf(gen(t, input(t, mode(runtimeapi.NamespaceMode_NODE, ""))).Spec)[specs.PIDNamespace]; ok {
		t.Fatal("NODE pid mode has a pid namespace")
	}
	in = input(t, mode(runtimeapi.NamespaceMode_TARGET, "other"))
	in.TargetPIDNS = "/proc/77/ns/pid"
	if p := nsOf(gen(t, in).Spec)[specs.PIDNamespace]; p != "/proc/77/ns/pid" {
		t.Fatalf("TARGET pid ns %q", p)
	}
	genErr(t, input(t, mode(runtimeapi.NamespaceMode_TARGET, "other")), errdefs.ErrInvalidArgument)
	// Host network: no net/uts namespace.
	cfg := &runtimeapi.ContainerConfig{}
	secCtx(cfg).NamespaceOptions = &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE}
	ns = nsOf(gen(t, input(t, cfg)).Spec)
	if _, ok := ns[specs.NetworkNamespace]; ok {
		t.Fatal("host network container has a network namespace")
	}
	if _, ok := ns[specs.UTSNamespace]; ok {
		t.Fatal("host network container has a uts namespace")
	}
	if _, ok := ns[specs.IPCNamespace]; ok {
		t.Fatal("host ipc container has an ipc namespace")
	}
	// cgroup v2 gets a cgroup namespace.
	in = input(t, &runtimeapi.ContainerConfig{})
	in.Host.CgroupV2 = true
	if _, ok := nsOf(gen(t, in).Spec)[specs.CgroupNamespace]; !ok {
		t.Fatal("no cgroup namespace on v2")
	}
	cfg = &runtimeapi.ContainerConfig{}
	secCtx(cfg).NamespaceOptions = &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}}
	genErr(t, input(t, cfg), errdefs.ErrInvalidArgument)
}

func TestProbeHost(t *testing.T) {
	h, err := ProbeHost()
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Bounding) == 0 || len(h.Controllers) == 0 {
		t.Fatalf("probe found nothing: %+v", h)
	}
	t.Logf("host: v2=%v swap=%v apparmor=%v oom=%d controllers=%v devices=%d missing caps=%v",
		h.CgroupV2, h.SwapAccounting, h.AppArmor, h.OOMScoreAdj, h.Controllers, len(h.Devices),
		slices.DeleteFunc(slices.Clone(capNames[:]), h.HasCap))
}
