package main

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"sigs.k8s.io/yaml"
)

func kubeTestSource() kubeSource {
	podCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "shop", Uid: "u1"},
		Hostname:     "web-host",
		Labels:       map[string]string{"app": "web", "io.kubernetes.pod.uid": "u1"},
		Annotations:  map[string]string{"team": "a", "kubernetes.io/config.seen": "now"},
		DnsConfig:    &runtimeapi.DNSConfig{Servers: []string{"10.0.0.10"}, Searches: []string{"shop.svc"}, Options: []string{"ndots:5", "edns0"}},
		PortMappings: []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_UDP, ContainerPort: 53, HostPort: 5353}, {ContainerPort: 80}},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			Sysctls: map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"},
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions:   &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER},
				RunAsUser:          &runtimeapi.Int64Value{Value: 1000},
				SupplementalGroups: []int64{2000},
			},
		},
	}
	ctrCfg := &runtimeapi.ContainerConfig{
		Metadata:   &runtimeapi.ContainerMetadata{Name: "app", Attempt: 1},
		Image:      &runtimeapi.ImageSpec{Image: "registry.example.com/app:1.0"},
		Command:    []string{"/bin/app"},
		Args:       []string{"--port", "80"},
		WorkingDir: "/srv",
		Envs:       []*runtimeapi.KeyValue{{Key: "MODE", Value: []byte("prod")}},
		Mounts: []*runtimeapi.Mount{
			{ContainerPath: "/data", HostPath: "/var/data", Readonly: true},
			{ContainerPath: "/etc/hosts", HostPath: "/var/lib/kubelet/pods/u1/etc-hosts"},
			{ContainerPath: "/cache", HostPath: "/var/cache/app", Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
		},
		Tty: true,
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 256, MemoryLimitInBytes: 128 << 20},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				Capabilities:   &runtimeapi.Capability{AddCapabilities: []string{"NET_ADMIN"}, DropCapabilities: []string{"CAP_ALL"}},
				RunAsUser:      &runtimeapi.Int64Value{Value: 1000},
				ReadonlyRootfs: true,
				NoNewPrivs:     true,
				Seccomp:        &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
			},
		},
	}
	old := &runtimeapi.ContainerStatus{Metadata: &runtimeapi.ContainerMetadata{Name: "app", Attempt: 0}, CreatedAt: 1,
		Image: &runtimeapi.ImageSpec{Image: "old:image"}}
	side := &runtimeapi.ContainerStatus{Metadata: &runtimeapi.ContainerMetadata{Name: "side"}, CreatedAt: 3,
		Image:     &runtimeapi.ImageSpec{Image: "busybox:latest"},
		Resources: &runtimeapi.ContainerResources{Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 30}}}
	return kubeSource{
		pod:       &runtimeapi.PodSandboxStatus{Id: "podid", Metadata: podCfg.Metadata},
		podConfig: podCfg,
		containers: []kubeContainer{
			{status: &runtimeapi.ContainerStatus{Metadata: ctrCfg.Metadata, CreatedAt: 2, Image: &runtimeapi.ImageSpec{Image: "sha256:abc"}}, config: ctrCfg},
			{status: old},
			{status: side},
		},
	}
}

func TestGenerateKubeRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	if err := writeKubeYAML(&buf, "podid", kubePod(kubeTestSource())); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	pod := &corev1.Pod{}
	if err := yaml.UnmarshalStrict(buf.Bytes(), pod); err != nil {
		t.Fatalf("output is not a v1 Pod: %v\n%s", err, out)
	}
	for _, noise := range []string{"status:", "creationTimestamp", "resources: {}", "io.kubernetes", "kubernetes.io/config", "/etc/hosts"} {
		if strings.Contains(out, noise) {
			t.Errorf("output has %q:\n%s", noise, out)
		}
	}
	if pod.APIVersion != "v1" || pod.Kind != "Pod" || pod.Name != "web" || pod.Namespace != "shop" {
		t.Errorf("meta: %+v %+v", pod.TypeMeta, pod.ObjectMeta)
	}
	if len(pod.Labels) != 1 || pod.Labels["app"] != "web" || len(pod.Annotations) != 1 || pod.Annotations["team"] != "a" {
		t.Errorf("labels %v annotations %v", pod.Labels, pod.Annotations)
	}
	s := pod.Spec
	if s.Hostname != "web-host" || s.HostNetwork || s.ShareProcessNamespace != nil || s.DNSPolicy != corev1.DNSNone ||
		s.DNSConfig.Nameservers[0] != "10.0.0.10" || *s.DNSConfig.Options[0].Value != "5" || s.DNSConfig.Options[1].Value != nil {
		t.Errorf("pod spec: %+v", s)
	}
	if sc := s.SecurityContext; sc == nil || *sc.RunAsUser != 1000 || sc.SupplementalGroups[0] != 2000 || sc.Sysctls[0].Name != "net.ipv4.ip_unprivileged_port_start" {
		t.Errorf("pod security context: %+v", sc)
	}
	if len(s.Containers) != 2 || s.Containers[0].Name != "app" || s.Containers[1].Name != "side" {
		t.Fatalf("containers: %+v", s.Containers)
	}
	c := s.Containers[0]
	if c.Image != "registry.example.com/app:1.0" || c.Command[0] != "/bin/app" || c.Args[1] != "80" || c.WorkingDir != "/srv" ||
		c.Env[0].Name != "MODE" || c.Env[0].Value != "prod" || !c.TTY {
		t.Errorf("container: %+v", c)
	}
	if len(c.Ports) != 2 || c.Ports[0].ContainerPort != 53 || c.Ports[0].HostPort != 5353 || c.Ports[0].Protocol != corev1.ProtocolUDP || c.Ports[1].Protocol != corev1.ProtocolTCP {
		t.Errorf("ports: %+v", c.Ports)
	}
	if q := c.Resources.Limits[corev1.ResourceCPU]; q.Cmp(resource.MustParse("500m")) != 0 {
		t.Errorf("cpu limit %s", q.String())
	}
	if q := c.Resources.Requests[corev1.ResourceCPU]; q.Cmp(resource.MustParse("250m")) != 0 {
		t.Errorf("cpu request %s", q.String())
	}
	if q := c.Resources.Limits[corev1.ResourceMemory]; q.Cmp(resource.MustParse("128Mi")) != 0 {
		t.Errorf("memory limit %s", q.String())
	}
	if q := s.Containers[1].Resources.Limits[corev1.ResourceMemory]; q.Cmp(resource.MustParse("1Gi")) != 0 {
		t.Errorf("side memory limit (from status) %s", q.String())
	}
	sc := c.SecurityContext
	if sc == nil || *sc.RunAsUser != 1000 || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || sc.Privileged != nil ||
		sc.Capabilities.Add[0] != "NET_ADMIN" || sc.Capabilities.Drop[0] != "ALL" || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("security context: %+v", sc)
	}
	if len(c.VolumeMounts) != 2 || len(s.Volumes) != 2 || s.Volumes[0].HostPath.Path != "/var/data" || !c.VolumeMounts[0].ReadOnly ||
		*c.VolumeMounts[1].MountPropagation != corev1.MountPropagationHostToContainer || c.VolumeMounts[1].Name != s.Volumes[1].Name {
		t.Errorf("volumes %+v mounts %+v", s.Volumes, c.VolumeMounts)
	}
	if !strings.HasPrefix(out, "# Generated by berth from pod sandbox podid.") {
		t.Errorf("no header:\n%s", out)
	}
}

func TestConfigFromInfo(t *testing.T) {
	cfg := &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: &runtimeapi.ImageSpec{Image: "i"},
		Envs: []*runtimeapi.KeyValue{{Key: "A", Value: []byte("b")}}}
	js, _ := protojson.Marshal(cfg)
	for name, info := range map[string]map[string]string{
		"top level":        {"config": string(js)},
		"containerd-style": {"info": `{"sandboxID": "x", "config": ` + string(js) + `}`},
	} {
		got := &runtimeapi.ContainerConfig{}
		if !configFromInfo(info, got) || got.Metadata.Name != "c" || string(got.Envs[0].Value) != "b" {
			t.Errorf("%s: got %v", name, got)
		}
	}
	if configFromInfo(map[string]string{"info": `{"pid": 1}`}, &runtimeapi.ContainerConfig{}) {
		t.Error("found a config where there is none")
	}
	spec := containerConfigFromSpec(map[string]string{"info": `{"pid": 3, "runtimeSpec": {
	  "process": {"args": ["sh", "-c", "x"], "env": ["A=b=c", "HOSTNAME=h"], "cwd": "/w", "user": {"uid": 1000, "gid": 0},
	    "capabilities": {"bounding": ["CAP_CHOWN", "CAP_NET_ADMIN", "CAP_KILL"]}, "noNewPrivileges": true},
	  "root": {"path": "rootfs", "readonly": true},
	  "linux": {"resources": {"memory": {"limit": 1048576}, "cpu": {"shares": 512, "quota": 10000, "period": 100000}}}}}`},
		[]string{"CHOWN", "KILL", "SETUID"})
	if spec == nil || spec.Command[2] != "x" || len(spec.Envs) != 1 || string(spec.Envs[0].Value) != "b=c" || spec.WorkingDir != "/w" {
		t.Fatalf("from spec: %v", spec)
	}
	sc, res := spec.Linux.SecurityContext, spec.Linux.Resources
	if sc.RunAsUser.Value != 1000 || sc.RunAsGroup != nil || !sc.ReadonlyRootfs || !sc.NoNewPrivs ||
		strings.Join(sc.Capabilities.AddCapabilities, ",") != "NET_ADMIN" || strings.Join(sc.Capabilities.DropCapabilities, ",") != "SETUID" {
		t.Errorf("security from spec: %v", sc)
	}
	if res.MemoryLimitInBytes != 1<<20 || res.CpuShares != 512 || res.CpuQuota != 10000 || res.CpuPeriod != 100000 {
		t.Errorf("resources from spec: %v", res)
	}
}

func TestPodConfigFromBerthInfo(t *testing.T) {
	raw := `{"id": "p", "metadata": {"name": "web", "namespace": "ns", "uid": "u"}, "hostname": "h",
	  "port_mappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}, {"containerPort": 53, "protocol": "udp"}],
	  "sysctls": {"kernel.shm_rmid_forced": "1"}, "dns": {"servers": ["1.1.1.1"], "options": ["ndots:2"]}}`
	cfg := podConfigFromBerthInfo(raw)
	if cfg == nil || cfg.Hostname != "h" || cfg.PortMappings[0].HostPort != 8080 || cfg.PortMappings[1].Protocol != runtimeapi.Protocol_UDP ||
		cfg.Linux.Sysctls["kernel.shm_rmid_forced"] != "1" || cfg.DnsConfig.Servers[0] != "1.1.1.1" {
		t.Errorf("got %v", cfg)
	}
	if podConfigFromBerthInfo(`{"pid": 3}`) != nil || podConfigFromBerthInfo("") != nil {
		t.Error("not a pod record, yet a config")
	}
}

func TestSystemdUnit(t *testing.T) {
	unit := systemdUnit(&systemdOptions{berthd: "/usr/bin/berthd", envFile: "/etc/default/berth"}, "/etc/berth/b.toml")
	for _, want := range []string{
		"ExecStart=/usr/bin/berthd --config /etc/berth/b.toml $BERTH_OPTIONS", "EnvironmentFile=-/etc/default/berth",
		"ExecReload=/bin/kill -s HUP $MAINPID", "KillMode=process", "Type=notify", "NotifyAccess=main", "TimeoutStartSec=5min",
		"Before=kubelet.service", "WantedBy=multi-user.target",
	} {
		if !strings.Contains(unit, "\n"+want+"\n") {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	for _, bad := range []string{"Type=simple", "TimeoutStartSec=0", "KillMode=control-group", "KillMode=mixed"} {
		if strings.Contains(unit, bad) {
			t.Errorf("unit has %q:\n%s", bad, unit)
		}
	}
	if u := systemdUnit(&systemdOptions{berthd: "/b"}, ""); !strings.Contains(u, "\nExecStart=/b $BERTH_OPTIONS\n") {
		t.Errorf("unit without a config file:\n%s", u)
	}
}
