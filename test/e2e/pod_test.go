package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// TestPodNetworkReadyFlips: no CNI config means NetworkReady=false with
// a reason and pods that fail cleanly; a config dropped in later is
// picked up without a restart.
func TestPodNetworkReadyFlips(t *testing.T) {
	d, tn := startNetDaemonEmpty(t)
	c := networkReady(t, d)
	if c.GetStatus() || c.GetReason() == "" || !strings.Contains(c.GetMessage(), d.CNIDir) {
		t.Fatalf("NetworkReady without config: %v", c)
	}
	before := snapshotHost(t, d, tn)
	_, err := d.Runtime.RunPodSandbox(ctxT(t, 10*time.Second), &runtimeapi.RunPodSandboxRequest{Config: podConfig("early")})
	wantCode(t, err, codes.FailedPrecondition, "network")
	assertSameHost(t, before, snapshotHost(t, d, tn))

	writeConf(t, d, "10-test.conflist", tn.conflist("bridge"))
	waitNetworkReady(t, d, true)
	id := runPod(t, d, podConfig("late"))
	st, _ := podStatus(t, d, id)
	if !strings.HasPrefix(st.GetNetwork().GetIp(), tn.Prefix) {
		t.Fatalf("pod IP %q not in %s", st.GetNetwork().GetIp(), tn.Subnet)
	}
	removePod(t, d, id)

	// Removing the config flips it back.
	os.Remove(filepath.Join(d.CNIDir, "10-test.conflist"))
	waitNetworkReady(t, d, false)
}

func startNetDaemonEmpty(t *testing.T) (*testutil.Daemon, *testNet) {
	t.Helper()
	d := testutil.StartDaemon(t, testutil.DaemonOptions{BinDir: binDir})
	tn := newTestNet(t, d.Dir)
	t.Cleanup(func() { removeAllPods(d) })
	return d, tn
}

// TestPodLifecycle covers one pod end to end: namespaces, files,
// sysctls, network, port mapping, status, list, stop, remove.
func TestPodLifecycle(t *testing.T) {
	d, tn := startNetDaemon(t, nil)
	before := snapshotHost(t, d, tn)
	hostPort := freePort(t)
	logDir := filepath.Join(d.Dir, "podlogs", "e2e_web")

	cfg := podConfig("web")
	cfg.Hostname = "web-host"
	cfg.LogDirectory = logDir
	cfg.Annotations = map[string]string{"note": "kept"}
	cfg.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"10.0.0.10", "fd00::10"}, Searches: []string{"e2e.svc.cluster.local", "svc.cluster.local"}, Options: []string{"ndots:5", "edns0"}}
	cfg.PortMappings = []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 80, HostPort: int32(hostPort), HostIp: "127.0.0.1"}}
	cfg.Linux.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "kernel.shm_rmid_forced": "1", "net.ipv4.ping_group_range": "0 2147483647"}
	id := runPod(t, d, cfg)
	other := runPod(t, d, podConfig("peer"))

	st, info := podStatus(t, d, id)
	ost, oinfo := podStatus(t, d, other)
	ip, oip := st.GetNetwork().GetIp(), ost.GetNetwork().GetIp()
	if !strings.HasPrefix(ip, tn.Prefix) || !strings.HasPrefix(oip, tn.Prefix) || ip == oip {
		t.Fatalf("pod IPs %q and %q: want distinct IPs in %s", ip, oip, tn.Subnet)
	}
	if st.GetState() != runtimeapi.PodSandboxState_SANDBOX_READY || st.GetLabels()["app"] != "web" || st.GetAnnotations()["note"] != "kept" {
		t.Fatalf("status: %v", st)
	}
	if st.GetMetadata().GetName() != "web" || st.GetMetadata().GetUid() != "uid-web" || st.GetRuntimeHandler() != "runc" {
		t.Fatalf("status metadata: %v", st)
	}

	// Namespaces: the IP is on eth0 inside, reachable from the host and
	// from the other pod.
	if out := run(t, "nsenter", "--net="+info.NetNS, "ip", "-o", "addr", "show", "eth0"); !strings.Contains(out, ip+"/24") {
		t.Fatalf("eth0 in pod netns: %s", out)
	}
	run(t, "busybox", "ping", "-c1", "-W2", ip)
	run(t, "nsenter", "--net="+oinfo.NetNS, "busybox", "ping", "-c1", "-W2", ip)
	if got := run(t, "nsenter", "--uts="+info.UTSNS, "hostname"); got != "web-host" {
		t.Errorf("hostname in pod: %q", got)
	}
	if got := readFile(t, info.HostnamePath); got != "web-host\n" {
		t.Errorf("hostname file: %q", got)
	}
	wantResolv := "search e2e.svc.cluster.local svc.cluster.local\nnameserver 10.0.0.10\nnameserver fd00::10\noptions ndots:5 edns0\n"
	if got := readFile(t, info.ResolvConfPath); got != wantResolv {
		t.Errorf("resolv.conf:\n%s\nwant:\n%s", got, wantResolv)
	}
	if got := readFile(t, info.HostsPath); !strings.Contains(got, ip+"\tweb-host\n") || !strings.Contains(got, "127.0.0.1\tlocalhost") {
		t.Errorf("hosts:\n%s", got)
	}

	// Sysctls apply inside only.
	hostStart := strings.TrimSpace(readFile(t, "/proc/sys/net/ipv4/ip_unprivileged_port_start"))
	if got := run(t, "nsenter", "--net="+info.NetNS, "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"); got != "0" {
		t.Errorf("pod net sysctl: %q", got)
	}
	if got := run(t, "nsenter", "--net="+info.NetNS, "cat", "/proc/sys/net/ipv4/ping_group_range"); got != "0\t2147483647" {
		t.Errorf("pod ping_group_range: %q", got)
	}
	if got := run(t, "nsenter", "--ipc="+info.IPCNS, "cat", "/proc/sys/kernel/shm_rmid_forced"); got != "1" {
		t.Errorf("pod ipc sysctl: %q", got)
	}
	if got := run(t, "nsenter", "--net="+oinfo.NetNS, "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"); got != hostStart {
		t.Errorf("other pod got the sysctl: %q", got)
	}
	if hostStart == "0" || strings.TrimSpace(readFile(t, "/proc/sys/kernel/shm_rmid_forced")) == "1" {
		t.Errorf("sysctls leaked to the host")
	}

	// /dev/shm is a tmpfs of the configured size (64m default).
	if mi := readFile(t, "/proc/self/mountinfo"); !strings.Contains(mi, " "+info.ShmPath+" ") || !strings.Contains(mi, "size=65536k") {
		t.Errorf("shm %s not a 64m tmpfs", info.ShmPath)
	}
	if fi, err := os.Stat(logDir); err != nil || !fi.IsDir() {
		t.Errorf("log directory: %v", err)
	}

	// Port mapping: a DNAT rule, and a TCP connection from the host's
	// 127.0.0.1 reaches a server in the pod's netns.
	if nat := run(t, "iptables-save", "-t", "nat"); !strings.Contains(nat, fmt.Sprintf("--to-destination %s:80", ip)) {
		t.Fatalf("no DNAT to %s:80:\n%s", ip, nat)
	}
	serveHTTP(t, info.NetNS, "hello from the pod")
	if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/index.html", hostPort)); body != "hello from the pod" {
		t.Fatalf("through the host port: %q", body)
	}

	listPods(t, d, id, other)

	// Stop: twice is fine; the network and namespaces are gone.
	stopPod(t, d, id)
	stopPod(t, d, id)
	st, info2 := podStatus(t, d, id)
	if st.GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY || info2.NetNS != "" {
		t.Fatalf("after stop: %v %+v", st.GetState(), info2)
	}
	if _, err := os.Stat(info.NetNS); !os.IsNotExist(err) {
		t.Errorf("netns %s still there after stop", info.NetNS)
	}
	if nat := run(t, "iptables-save", "-t", "nat"); strings.Contains(nat, ip+":80") {
		t.Errorf("DNAT rule survived stop")
	}
	removePod(t, d, id)
	removePod(t, d, id)
	removePod(t, d, other)
	_, err := d.Runtime.PodSandboxStatus(ctxT(t, 5*time.Second), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	wantCode(t, err, codes.NotFound, "")
	// A stop of a removed pod is still fine.
	stopPod(t, d, id)
	after := snapshotHost(t, d, tn)
	if _, err := os.Stat(logDir); !os.IsNotExist(err) {
		t.Errorf("empty log directory made by berth survived remove: %v", err)
	}
	assertSameHost(t, before, after)
}

func listPods(t *testing.T, d *testutil.Daemon, id, other string) {
	t.Helper()
	list := func(f *runtimeapi.PodSandboxFilter) []string {
		resp, err := d.Runtime.ListPodSandbox(ctxT(t, 5*time.Second), &runtimeapi.ListPodSandboxRequest{Filter: f})
		if err != nil {
			t.Fatalf("ListPodSandbox: %v", err)
		}
		var ids []string
		for _, p := range resp.GetItems() {
			ids = append(ids, p.GetId())
		}
		return ids
	}
	if got := list(nil); len(got) != 2 {
		t.Errorf("list all: %v", got)
	}
	if got := list(&runtimeapi.PodSandboxFilter{Id: id[:12]}); len(got) != 1 || got[0] != id {
		t.Errorf("list by id prefix: %v", got)
	}
	if got := list(&runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "peer"}}); len(got) != 1 || got[0] != other {
		t.Errorf("list by label: %v", got)
	}
	if got := list(&runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "none"}}); len(got) != 0 {
		t.Errorf("list by missing label: %v", got)
	}
	ready := &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}
	notReady := &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}
	if got := list(&runtimeapi.PodSandboxFilter{State: ready}); len(got) != 2 {
		t.Errorf("list ready: %v", got)
	}
	if got := list(&runtimeapi.PodSandboxFilter{State: notReady}); len(got) != 0 {
		t.Errorf("list not ready: %v", got)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// serveHTTP runs busybox httpd on port 80 inside a pod's netns until the
// test ends.
func serveHTTP(t *testing.T, netns, body string) {
	t.Helper()
	www := t.TempDir()
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", "--net="+netns, "busybox", "httpd", "-f", "-p", "80", "-h", www)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	var lastErr error
	for i := 0; i < 50; i++ {
		resp, err := client.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b)
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("GET %s: %v", url, lastErr)
	return ""
}
