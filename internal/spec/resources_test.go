package spec

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestResources(t *testing.T) {
	cfg := &runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{
		CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, CpusetCpus: "0-1", CpusetMems: "0",
		MemoryLimitInBytes: 64 << 20, OomScoreAdj: 500,
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 1 << 21}},
		Unified:        map[string]string{"memory.high": "1000000"},
	}}}
	in := input(t, cfg)
	in.Options.PidsLimit = 1024
	res := gen(t, in)
	r := res.Spec.Linux.Resources
	if *r.CPU.Shares != 512 || *r.CPU.Quota != 50000 || *r.CPU.Period != 100000 || r.CPU.Cpus != "0-1" || r.CPU.Mems != "0" {
		t.Fatalf("cpu %+v", r.CPU)
	}
	if *r.Memory.Limit != 64<<20 || *r.Memory.Swap != 64<<20 {
		t.Fatalf("memory %+v", r.Memory)
	}
	if *r.Pids.Limit != 1024 {
		t.Fatalf("pids %+v", r.Pids)
	}
	if len(r.HugepageLimits) != 0 || len(r.Unified) != 0 {
		t.Fatalf("hugepages %v / unified %v reached runc on a host without them", r.HugepageLimits, r.Unified)
	}
	if *res.Spec.Process.OOMScoreAdj != 500 {
		t.Fatalf("oom_score_adj %d", *res.Spec.Process.OOMScoreAdj)
	}
	if !strings.Contains(strings.Join(res.Adapted, "\n"), "hugetlb") {
		t.Fatalf("hugepage drop not reported: %q", res.Adapted)
	}
	if res.Spec.Linux.CgroupsPath != "/kubepods/pod1/berth-0123456789abcdef" {
		t.Fatalf("cgroups path %q", res.Spec.Linux.CgroupsPath)
	}
	// A full host keeps them.
	in = input(t, cfg)
	in.Host = fullHost()
	in.Host.CgroupV2 = true
	r = gen(t, in).Spec.Linux.Resources
	if len(r.HugepageLimits) != 1 || r.Unified["memory.high"] != "1000000" {
		t.Fatalf("full host lost hugepages/unified: %+v", r)
	}
	// Negative oom_score_adj without CAP_SYS_RESOURCE is raised to berthd's.
	cfg.Linux.Resources.OomScoreAdj = -997
	res = gen(t, input(t, cfg))
	if *res.Spec.Process.OOMScoreAdj != 0 {
		t.Fatalf("oom_score_adj %d, want 0", *res.Spec.Process.OOMScoreAdj)
	}
	in = input(t, cfg)
	in.Host = fullHost()
	if got := *gen(t, in).Spec.Process.OOMScoreAdj; got != -997 {
		t.Fatalf("oom_score_adj %d with CAP_SYS_RESOURCE", got)
	}
	for _, bad := range []*runtimeapi.LinuxContainerResources{
		{OomScoreAdj: 1001}, {CpusetCpus: "0-1;rm"}, {MemoryLimitInBytes: -1},
		{MemoryLimitInBytes: 100 << 20, MemorySwapLimitInBytes: 50 << 20},
	} {
		genErr(t, input(t, &runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{Resources: bad}}), errdefs.ErrInvalidArgument)
	}
	if p := CgroupsPath("systemd", "kubepods.slice", "abc"); p != "kubepods.slice:berth:abc" {
		t.Fatalf("systemd path %q", p)
	}
}

func TestSeccomp(t *testing.T) {
	// Unset means unconfined (the CRI's rule), as does an empty
	// deprecated path; RuntimeDefault, by field or path, is the default.
	if sec := gen(t, input(t, &runtimeapi.ContainerConfig{})).Spec.Linux.Seccomp; sec != nil {
		t.Fatalf("unset seccomp gave a profile: %+v", sec)
	}
	cfg := &runtimeapi.ContainerConfig{}
	secCtx(cfg).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
	sec := gen(t, input(t, cfg)).Spec.Linux.Seccomp
	if sec == nil || sec.DefaultAction != specs.ActErrno || len(sec.Syscalls) == 0 {
		t.Fatalf("no default seccomp profile: %+v", sec)
	}
	cfg = &runtimeapi.ContainerConfig{}
	secCtx(cfg).SeccompProfilePath = "runtime/default"
	if gen(t, input(t, cfg)).Spec.Linux.Seccomp == nil {
		t.Fatal("seccomp_profile_path runtime/default gave no profile")
	}
	secCtx(cfg).SeccompProfilePath = "bogus"
	genErr(t, input(t, cfg), errdefs.ErrInvalidArgument)
	cfg = &runtimeapi.ContainerConfig{}
	secCtx(cfg).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
	if gen(t, input(t, cfg)).Spec.Linux.Seccomp != nil {
		t.Fatal("unconfined has a profile")
	}
	prof := filepath.Join(t.TempDir(), "p.json")
	write(t, prof, `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}`)
	cfg = &runtimeapi.ContainerConfig{}
	secCtx(cfg).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: prof}
	sec = gen(t, input(t, cfg)).Spec.Linux.Seccomp
	if sec == nil || sec.DefaultAction != specs.ActAllow || len(sec.Syscalls) != 1 {
		t.Fatalf("localhost profile %+v", sec)
	}
	// A privileged container ignores even a localhost profile.
	secCtx(cfg).Privileged = true
	if sec := gen(t, input(t, cfg)).Spec.Linux.Seccomp; sec != nil {
		t.Fatalf("privileged container has seccomp %+v", sec)
	}
	secCtx(cfg).Privileged = false
	secCtx(cfg).Seccomp.LocalhostRef = prof + ".missing"
	genErr(t, input(t, cfg), errdefs.ErrInvalidArgument)
	write(t, prof, `{not json`)
	secCtx(cfg).Seccomp.LocalhostRef = prof
	genErr(t, input(t, cfg), errdefs.ErrInvalidArgument)
}

// The AppArmor decision: on a host with AppArmor, RuntimeDefault (or
// nothing asked) is the configured default profile, unconfined for a
// privileged container; Localhost is the named profile; Unconfined is
// unconfined. A host without AppArmor gets no profile at all.
func TestAppArmor(t *testing.T) {
	prof := func(kind runtimeapi.SecurityProfile_ProfileType, ref string) *runtimeapi.SecurityProfile {
		return &runtimeapi.SecurityProfile{ProfileType: kind, LocalhostRef: ref}
	}
	for _, tc := range []struct {
		name       string
		sc         *runtimeapi.LinuxContainerSecurityContext
		hostHas    bool
		want       string
		wantReport bool
	}{
		{"runtime default", &runtimeapi.LinuxContainerSecurityContext{Apparmor: prof(runtimeapi.SecurityProfile_RuntimeDefault, "")}, true, "berth-default", false},
		{"unset", &runtimeapi.LinuxContainerSecurityContext{}, true, "berth-default", false},
		{"deprecated runtime/default", &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "runtime/default"}, true, "berth-default", false},
		{"privileged default", &runtimeapi.LinuxContainerSecurityContext{Privileged: true, Apparmor: prof(runtimeapi.SecurityProfile_RuntimeDefault, "")}, true, "unconfined", false},
		{"localhost", &runtimeapi.LinuxContainerSecurityContext{Apparmor: prof(runtimeapi.SecurityProfile_Localhost, "localhost/myprof")}, true, "myprof", false},
		{"localhost bare name", &runtimeapi.LinuxContainerSecurityContext{Apparmor: prof(runtimeapi.SecurityProfile_Localhost, "myprof")}, true, "myprof", false},
		{"privileged localhost", &runtimeapi.LinuxContainerSecurityContext{Privileged: true, Apparmor: prof(runtimeapi.SecurityProfile_Localhost, "myprof")}, true, "myprof", false},
		{"deprecated localhost", &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "localhost/myprof"}, true, "myprof", false},
		{"unconfined", &runtimeapi.LinuxContainerSecurityContext{Apparmor: prof(runtimeapi.SecurityProfile_Unconfined, "")}, true, "unconfined", false},
		{"deprecated unconfined", &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "unconfined"}, true, "unconfined", false},
		{"no apparmor: default", &runtimeapi.LinuxContainerSecurityContext{Apparmor: prof(runtimeapi.SecurityProfile_RuntimeDefault, "")}, false, "", false},
		{"no apparmor: unset", &runtimeapi.LinuxContainerSecurityContext{}, false, "", false},
		{"no apparmor: localhost", &runtimeapi.LinuxContainerSecurityContext{Apparmor: prof(runtimeapi.SecurityProfile_Localhost, "localhost/myprof")}, false, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := input(t, &runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: tc.sc}})
			in.Host.AppArmor = tc.hostHas
			in.Options.AppArmorDefault = "berth-default"
			res := gen(t, in)
			if got := res.Spec.Process.ApparmorProfile; got != tc.want {
				t.Errorf("profile %q, want %q", got, tc.want)
			}
			reported := slices.ContainsFunc(res.Adapted, func(m string) bool { return strings.Contains(m, "AppArmor") })
			if reported != tc.wantReport {
				t.Errorf("adapted %q", res.Adapted)
			}
		})
	}
	for _, sc := range []*runtimeapi.LinuxContainerSecurityContext{
		{Apparmor: prof(runtimeapi.SecurityProfile_Localhost, "localhost/")},
		{ApparmorProfile: "bogus"},
	} {
		in := input(t, &runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: sc}})
		in.Host.AppArmor = true
		genErr(t, in, errdefs.ErrInvalidArgument)
	}
}

func TestDevices(t *testing.T) {
	cfg := &runtimeapi.ContainerConfig{Devices: []*runtimeapi.Device{{ContainerPath: "/dev/mynull", HostPath: "/dev/null", Permissions: "rw"}}}
	s := gen(t, input(t, cfg)).Spec
	if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/mynull" || s.Linux.Devices[0].Major != 1 || s.Linux.Devices[0].Minor != 3 {
		t.Fatalf("devices %+v", s.Linux.Devices)
	}
	r := s.Linux.Resources.Devices
	if len(r) != 2 || r[0].Allow || !r[1].Allow || r[1].Access != "rw" {
		t.Fatalf("device rules %+v", r)
	}
	for _, bad := range []*runtimeapi.Device{
		{ContainerPath: "/dev/x", HostPath: "/dev/does-not-exist"},
		{ContainerPath: "/dev/x", HostPath: "/dev/null", Permissions: "rwx"},
		{ContainerPath: "/dev/x", HostPath: "/etc/hostname"},
	} {
		genErr(t, input(t, &runtimeapi.ContainerConfig{Devices: []*runtimeapi.Device{bad}}), errdefs.ErrInvalidArgument)
	}
}
