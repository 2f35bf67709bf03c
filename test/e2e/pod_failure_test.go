package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestPodBadInput: each malformed request is an InvalidArgument naming
// its field, and leaves nothing behind.
func TestPodBadInput(t *testing.T) {
	d, tn := startNetDaemon(t, nil)
	before := snapshotHost(t, d, tn)
	hostNet := func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
	}
	cases := []struct {
		name   string
		field  string
		mutate func(*runtimeapi.PodSandboxConfig)
		nilCfg bool
		rh     string
	}{
		{name: "no config", field: "config", nilCfg: true},
		{name: "no metadata", field: "metadata", mutate: func(c *runtimeapi.PodSandboxConfig) { c.Metadata = nil }},
		{name: "empty name", field: "metadata.name", mutate: func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Name = "" }},
		{name: "name with slash", field: "metadata.name", mutate: func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Name = "a/b" }},
		{name: "namespace escapes", field: "metadata.namespace", mutate: func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Namespace = "../etc" }},
		{name: "host sysctl", field: "kernel.core_pattern", mutate: func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Sysctls = map[string]string{"kernel.core_pattern": "|/bin/sh"}
		}},
		{name: "CVE-2022-0811 value", field: "linux.sysctls", mutate: func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Sysctls = map[string]string{"kernel.shm_rmid_forced": "1+kernel.core_pattern=|/tmp/x"}
		}},
		{name: "sysctl key with slash", field: "linux.sysctls", mutate: func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Sysctls = map[string]string{"net/ipv4/../../kernel/core_pattern": "1"}
		}},
		{name: "sysctl value with newline", field: "linux.sysctls", mutate: func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Sysctls = map[string]string{"net.ipv4.tcp_syncookies": "1\nkernel.core_pattern=x"}
		}},
		{name: "sysctl key with equals", field: "linux.sysctls", mutate: func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Sysctls = map[string]string{"net.ipv4.tcp_syncookies=1": "1"}
		}},
		{name: "net sysctl on host network", field: "host network", mutate: func(c *runtimeapi.PodSandboxConfig) {
			hostNet(c)
			c.Linux.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"}
		}},
		{name: "sysctl unknown to the kernel", field: "net.ipv4.no_such_sysctl", mutate: func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Sysctls = map[string]string{"net.ipv4.no_such_sysctl": "1"}
		}},
		{name: "duplicate port mapping", field: "port_mappings[1]", mutate: func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 80, HostPort: 30080}, {ContainerPort: 81, HostPort: 30080}}
		}},
		{name: "bad container port", field: "port_mappings[0].container_port", mutate: func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 0, HostPort: 30080}}
		}},
		{name: "bad host IP", field: "port_mappings[0].host_ip", mutate: func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 80, HostPort: 30080, HostIp: "localhost"}}
		}},
		{name: "unknown runtime handler", field: "runtime_handler", rh: "kata"},
		{name: "cgroup parent escapes", field: "cgroup_parent", mutate: func(c *runtimeapi.PodSandboxConfig) { c.Linux.CgroupParent = "/kubepods/../../../sys" }},
		{name: "relative cgroup parent", field: "cgroup_parent", mutate: func(c *runtimeapi.PodSandboxConfig) { c.Linux.CgroupParent = "kubepods" }},
		{name: "DNS option with newline", field: "dns_config.options[0]", mutate: func(c *runtimeapi.PodSandboxConfig) {
			c.DnsConfig = &runtimeapi.DNSConfig{Options: []string{"ndots:5\nnameserver 6.6.6.6"}}
		}},
		{name: "DNS search with space", field: "dns_config.searches[0]", mutate: func(c *runtimeapi.PodSandboxConfig) {
			c.DnsConfig = &runtimeapi.DNSConfig{Searches: []string{"a b"}}
		}},
		{name: "DNS server not an IP", field: "dns_config.servers[0]", mutate: func(c *runtimeapi.PodSandboxConfig) {
			c.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"dns.example"}}
		}},
		{name: "bad hostname", field: "hostname", mutate: func(c *runtimeapi.PodSandboxConfig) { c.Hostname = "bad_host\n" }},
		{name: "pid TARGET", field: "namespace_options.pid", mutate: func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_TARGET
		}},
		{name: "network CONTAINER", field: "namespace_options.network", mutate: func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_CONTAINER
		}},
		{name: "relative log directory", field: "log_directory", mutate: func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = "var/log/pods/x" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := podConfig("bad")
			if tc.mutate != nil {
				tc.mutate(cfg)
			}
			if tc.nilCfg {
				cfg = nil
			}
			_, err := d.Runtime.RunPodSandbox(ctxT(t, 10*time.Second), &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: tc.rh})
			wantCode(t, err, codes.InvalidArgument, tc.field)
		})
	}
	// The same name still works afterwards: nothing stayed reserved.
	id := runPod(t, d, podConfig("bad"))
	removePod(t, d, id)
	assertSameHost(t, before, snapshotHost(t, d, tn))

	for _, id := range []string{"", "nope"} {
		_, err := d.Runtime.PodSandboxStatus(ctxT(t, 5*time.Second), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
		if id == "" {
			wantCode(t, err, codes.InvalidArgument, "pod_sandbox_id")
		} else {
			wantCode(t, err, codes.NotFound, "nope")
		}
	}
	_, err := d.Runtime.StopPodSandbox(ctxT(t, 5*time.Second), &runtimeapi.StopPodSandboxRequest{})
	wantCode(t, err, codes.InvalidArgument, "pod_sandbox_id")
	_, err = d.Runtime.UpdateRuntimeConfig(ctxT(t, 5*time.Second), &runtimeapi.UpdateRuntimeConfigRequest{
		RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "10.1.2.3"}}})
	wantCode(t, err, codes.InvalidArgument, "pod_cidr")
}

// pluginDir writes fake CNI plugins for failure injection and returns a
// drop-in that puts them first in plugin_dirs.
func pluginDir(t *testing.T) (string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	scripts := map[string]string{
		// failer passes VERSION and DEL but fails every ADD.
		"failer": `#!/bin/sh
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}';;
ADD) echo '{"cniVersion":"1.0.0","code":999,"msg":"injected failure"}'; exit 1;;
esac
exit 0
`,
		// slowbridge is the bridge plugin after a pause, to make a
		// RunPodSandbox outlive its caller's deadline.
		"slowbridge": "#!/bin/sh\n[ \"$CNI_COMMAND\" = ADD ] && sleep 1\nexec /usr/lib/cni/bridge \"$@\"\n",
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, map[string]string{"50-plugins.toml": fmt.Sprintf("[berth.network]\nplugin_dirs = [%q, \"/usr/lib/cni\"]\n", dir)}
}

// TestPodFailureInjection: a broken CNI config, a plugin failing
// mid-chain and a config naming a missing plugin all fail the pod and
// leak no mount, veth, IP allocation, iptables rule or record.
func TestPodFailureInjection(t *testing.T) {
	plugins, dropIns := pluginDir(t)
	d, tn := startNetDaemon(t, dropIns)
	before := snapshotHost(t, d, tn)
	withPorts := func(name string) *runtimeapi.PodSandboxConfig {
		c := podConfig(name)
		c.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 80, HostPort: int32(freePort(t))}}
		return c
	}

	// A plugin failing after bridge and portmap did their work.
	writeConf(t, d, "10-test.conflist", tn.conflist("bridge", `{"type": "failer"}`))
	waitNetworkReady(t, d, true)
	time.Sleep(100 * time.Millisecond) // let the watch see the rewrite
	_, err := d.Runtime.RunPodSandbox(ctxT(t, 30*time.Second), &runtimeapi.RunPodSandboxRequest{Config: withPorts("fail1")})
	if err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("want the injected CNI failure, got %v", err)
	}
	assertSameHost(t, before, snapshotHost(t, d, tn))

	// A broken IPAM config: the subnet is not one.
	broken := strings.Replace(tn.conflist("bridge"), tn.Subnet, "10.999.0.0/24", 1)
	writeConf(t, d, "10-test.conflist", broken)
	time.Sleep(100 * time.Millisecond)
	if _, err := d.Runtime.RunPodSandbox(ctxT(t, 30*time.Second), &runtimeapi.RunPodSandboxRequest{Config: withPorts("fail2")}); err == nil {
		t.Fatal("broken IPAM config: RunPodSandbox succeeded")
	}
	assertSameHost(t, before, snapshotHost(t, d, tn))

	// A config whose plugin binary is missing leaves the network not
	// ready, and pods fail before anything is made.
	writeConf(t, d, "10-test.conflist", tn.conflist("no-such-plugin"))
	waitNetworkReady(t, d, false)
	_, err = d.Runtime.RunPodSandbox(ctxT(t, 30*time.Second), &runtimeapi.RunPodSandboxRequest{Config: podConfig("fail3")})
	wantCode(t, err, codes.FailedPrecondition, "no-such-plugin")
	assertSameHost(t, before, snapshotHost(t, d, tn))

	// The plugin arriving after its config makes the network ready, with
	// no change in the config dir (plugin dirs are not watched).
	bridge, err := os.ReadFile("/usr/lib/cni/bridge")
	if err != nil {
		t.Fatal(err)
	}
	late := filepath.Join(plugins, "no-such-plugin")
	if err := os.WriteFile(late, bridge, 0o755); err != nil {
		t.Fatal(err)
	}
	waitNetworkReady(t, d, true)
	if err := os.Remove(late); err != nil {
		t.Fatal(err)
	}

	// Back to a good config: the same names work.
	writeConf(t, d, "10-test.conflist", tn.conflist("bridge"))
	waitNetworkReady(t, d, true)
	time.Sleep(100 * time.Millisecond)
	id := runPod(t, d, withPorts("fail1"))
	removePod(t, d, id)
	assertSameHost(t, before, snapshotHost(t, d, tn))
}

// TestPodRetryAfterTimeout: the kubelet's RunPodSandbox times out while
// CNI is slow; its retry (and concurrent duplicates) get the one pod
// that was made meanwhile, never "name is reserved" or a second pod.
func TestPodRetryAfterTimeout(t *testing.T) {
	_, dropIns := pluginDir(t)
	d, tn := startNetDaemon(t, dropIns)
	before := snapshotHost(t, d, tn)
	writeConf(t, d, "10-test.conflist", tn.conflist("slowbridge"))
	time.Sleep(100 * time.Millisecond)
	cfg := podConfig("slow")
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := d.Runtime.RunPodSandbox(short, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	wantCode(t, err, codes.DeadlineExceeded, "")

	ids := make([]string, 3)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := d.Runtime.RunPodSandbox(ctxT(t, 30*time.Second), &runtimeapi.RunPodSandboxRequest{Config: proto.Clone(cfg).(*runtimeapi.PodSandboxConfig)})
			if err != nil {
				t.Errorf("retry: %v", err)
				return
			}
			ids[i] = resp.GetPodSandboxId()
		}()
	}
	wg.Wait()
	if ids[0] == "" || ids[0] != ids[1] || ids[1] != ids[2] {
		t.Fatalf("retries got %v, want one id", ids)
	}
	resp, err := d.Runtime.ListPodSandbox(ctxT(t, 5*time.Second), &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(resp.GetItems()) != 1 {
		t.Fatalf("want exactly one pod, got %v %v", resp.GetItems(), err)
	}
	// A new attempt is a new pod.
	cfg2 := proto.Clone(cfg).(*runtimeapi.PodSandboxConfig)
	cfg2.Metadata.Attempt = 1
	if id2 := runPod(t, d, cfg2); id2 == ids[0] {
		t.Fatal("attempt 1 got attempt 0's pod")
	} else {
		removePod(t, d, id2)
	}
	removePod(t, d, ids[0])
	assertSameHost(t, before, snapshotHost(t, d, tn))
}
