package pod

import (
	"errors"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
)

func TestValidateSysctl(t *testing.T) {
	ok := []struct{ k, v string }{
		{"net.ipv4.ip_unprivileged_port_start", "0"},
		{"net.ipv4.ping_group_range", "0 2147483647"},
		{"net.ipv4.tcp_rmem", "4096\t87380\t6291456"},
		{"kernel.shm_rmid_forced", "1"},
		{"kernel.sem", "250 32000 100 128"},
		{"fs.mqueue.msg_max", "10"},
		{"net.ipv4.conf.all.rp_filter", "0"},
	}
	for _, c := range ok {
		if err := validateSysctl("f", c.k, c.v, true, true); err != nil {
			t.Errorf("%s=%q: %v", c.k, c.v, err)
		}
	}
	bad := []struct{ k, v string }{
		{"kernel.core_pattern", "|/bin/sh"},
		{"kernel.shm_rmid_forced", "1+kernel.core_pattern=|/x"},
		{"kernel.shm_rmid_forced", "1\nkernel.core_pattern=x"},
		{"kernel.shm_rmid_forced", "1=2"},
		{"net/ipv4/ip_forward", "1"},
		{"net.ipv4..ip_forward", "1"},
		{"net.ipv4.ip_forward=1", "1"},
		{"net.ipv4.ip_forward", ""},
		{"net.ipv4.ip_forward", "1/2"},
		{"net.ipv4.ip_forward", "1\x00"},
		{"vm.overcommit_memory", "1"},
		{"kernel.hostname", "x"},
		{"", "1"},
		{strings.Repeat("net.a", 100), "1"},
	}
	for _, c := range bad {
		if err := validateSysctl("f", c.k, c.v, true, true); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q=%q accepted (%v)", c.k, c.v, err)
		}
	}
	if err := validateSysctl("f", "net.ipv4.ip_forward", "1", false, true); err == nil {
		t.Error("net sysctl allowed on the host network")
	}
	if err := validateSysctl("f", "kernel.shm_rmid_forced", "1", true, false); err == nil {
		t.Error("ipc sysctl allowed in the host IPC namespace")
	}
}

func TestPodSysctlsDefaults(t *testing.T) {
	got, err := podSysctls([]string{"net.ipv4.ping_group_range=0 1", "kernel.shm_rmid_forced=1"}, map[string]string{"kernel.shm_rmid_forced": "0"}, false, true)
	if err != nil {
		t.Fatal(err)
	}
	// The net default is skipped for a host-network pod; the pod's own
	// value wins over the default.
	if len(got) != 1 || got["kernel.shm_rmid_forced"] != "0" {
		t.Fatalf("%v", got)
	}
}

func TestCgroupParent(t *testing.T) {
	for _, c := range []struct{ mgr, in, want string }{
		{"cgroupfs", "", "/berth"},
		{"cgroupfs", "/kubepods/besteffort/pod1", "/kubepods/besteffort/pod1"},
		{"cgroupfs", "/kubepods//x/", "/kubepods/x"},
		{"systemd", "", "system.slice"},
		{"systemd", "kubepods-besteffort-pod1.slice", "kubepods-besteffort-pod1.slice"},
	} {
		got, err := cgroupParent(c.mgr, c.in)
		if err != nil || got != c.want {
			t.Errorf("%s %q: %q %v", c.mgr, c.in, got, err)
		}
	}
	for _, c := range []struct{ mgr, in string }{
		{"cgroupfs", "kubepods"},
		{"cgroupfs", "/kubepods/../../sys"},
		{"cgroupfs", "/"},
		{"cgroupfs", "/a\nb"},
		{"systemd", "/kubepods"},
		{"systemd", "kubepods"},
		{"systemd", "-kubepods.slice"},
		{"systemd", "kube--pods.slice"},
		{"systemd", "a/b.slice"},
	} {
		if _, err := cgroupParent(c.mgr, c.in); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s %q accepted", c.mgr, c.in)
		}
	}
}

func TestBuildRecord(t *testing.T) {
	cfg := config.Default()
	pc := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "My_Pod", Namespace: "ns", Uid: "u1"},
		DnsConfig:    &runtimeapi.DNSConfig{Servers: []string{"1.1.1.1"}, Options: []string{"ndots:2"}},
		PortMappings: []*runtimeapi.PortMapping{{ContainerPort: 80, HostPort: 8080, Protocol: runtimeapi.Protocol_UDP}},
	}
	rec, err := buildRecord(cfg, pc, "")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Hostname != "My-Pod" || rec.RuntimeHandler != "runc" || rec.Namespaces.PID != ModePod || rec.ShmSize != 64<<20 {
		t.Fatalf("%+v", rec)
	}
	if rec.PortMappings[0].Protocol != "udp" || rec.CgroupParent != "/berth" {
		t.Fatalf("%+v", rec)
	}
	for name, mutate := range map[string]func(*runtimeapi.PodSandboxConfig){
		"uid with slash": func(p *runtimeapi.PodSandboxConfig) { p.Metadata.Uid = "a/b" },
		"bad dns option": func(p *runtimeapi.PodSandboxConfig) { p.DnsConfig.Options = []string{"a#b"} },
		"run_as_group without run_as_user": func(p *runtimeapi.PodSandboxConfig) {
			p.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				RunAsGroup: &runtimeapi.Int64Value{Value: 7}}}
		},
		"long hostname":   func(p *runtimeapi.PodSandboxConfig) { p.Hostname = strings.Repeat("a", 65) },
		"log dir with ..": func(p *runtimeapi.PodSandboxConfig) { p.LogDirectory = "/var/log/../../etc" },
		// Pods follow the containers' rule (CVE-2024-3154 class).
		"behaviour annotation": func(p *runtimeapi.PodSandboxConfig) {
			p.Annotations = map[string]string{"io.kubernetes.cri-o.Devices": "/dev/sda"}
		},
		"metadata over 256 KiB": func(p *runtimeapi.PodSandboxConfig) {
			p.Labels = map[string]string{"a": strings.Repeat("v", 200)}
			p.Annotations = map[string]string{"b": strings.Repeat("v", 256<<10)}
		},
		"label key with a space": func(p *runtimeapi.PodSandboxConfig) { p.Labels = map[string]string{"a b": "c"} },
	} {
		pc2 := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "n"}, DnsConfig: &runtimeapi.DNSConfig{}}
		mutate(pc2)
		if _, err := buildRecord(cfg, pc2, ""); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, s := range []string{"a", "nginx-1", "A.b_c", "0abc"} {
		if !validName(s) {
			t.Errorf("%q rejected", s)
		}
	}
	for _, s := range []string{"", ".", "..", "-a", "a/b", "a b", "a;b", "a=b", "a\n", strings.Repeat("a", 254)} {
		if validName(s) {
			t.Errorf("%q accepted", s)
		}
	}
}

// TestValidHostname: an absolute FQDN (one trailing dot), which the
// kubelet sends for setHostnameAsFQDN without a cluster domain, is a host
// name; an empty label is not.
func TestValidHostname(t *testing.T) {
	for _, s := range []string{"a", "pod-1", "hostfqdn-64924.t.hostfqdn-4558.svc.", "a.b", "A0"} {
		if !validHostname(s) {
			t.Errorf("%q rejected", s)
		}
	}
	for _, s := range []string{"", ".", "a..b", "a.b..", ".a", "-a", "a-", "a_b", "a b", strings.Repeat("a", 65), strings.Repeat("a", 64) + "."} {
		if validHostname(s) {
			t.Errorf("%q accepted", s)
		}
	}
}
