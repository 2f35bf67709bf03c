package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// netSeq gives every test network its own /24 and bridge so tests never
// share CNI state; the pid spreads concurrent `go test` runs apart.
var netSeq atomic.Int32

// testNet is one CNI network written into a daemon's network_dir.
type testNet struct {
	Name    string
	Bridge  string
	Subnet  string // e.g. 10.123.7.0/24
	Prefix  string // e.g. "10.123.7."
	Subnet6 string // "" unless dual stack
	DataDir string // host-local allocations
}

func newTestNet(t *testing.T, dir string) *testNet {
	t.Helper()
	n := (int(netSeq.Add(1)) + os.Getpid()*7) % 250
	tn := &testNet{
		Name:    fmt.Sprintf("berthtest%d", n),
		Bridge:  fmt.Sprintf("bbr%d", n),
		Subnet:  fmt.Sprintf("10.123.%d.0/24", n),
		Prefix:  fmt.Sprintf("10.123.%d.", n),
		DataDir: filepath.Join(dir, "ipam"),
	}
	t.Cleanup(func() {
		// The bridge plugin never deletes its bridge: it is the host's.
		exec.Command("ip", "link", "del", tn.Bridge).Run()
	})
	return tn
}

// conflist renders the network as bridge + host-local + portmap, plus
// extra plugins (raw JSON objects) at the end of the chain.
func (tn *testNet) conflist(bridgeType string, extra ...string) string {
	ranges := fmt.Sprintf(`[{"subnet": %q}]`, tn.Subnet)
	if tn.Subnet6 != "" {
		ranges += fmt.Sprintf(`, [{"subnet": %q}]`, tn.Subnet6)
	}
	plugins := []string{
		fmt.Sprintf(`{"type": %q, "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
		  "ipam": {"type": "host-local", "dataDir": %q, "ranges": [%s], "routes": [{"dst": "0.0.0.0/0"}]}}`,
			bridgeType, tn.Bridge, tn.DataDir, ranges),
		`{"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}`,
		// Last, as in berth's default conflist: loopback passes the
		// result through (berth brings lo up itself anyway).
		`{"type": "loopback"}`,
	}
	plugins = append(plugins, extra...)
	return fmt.Sprintf(`{"cniVersion": "1.0.0", "name": %q, "plugins": [%s]}`, tn.Name, strings.Join(plugins, ","))
}

// writeConf drops a CNI config into the daemon's network_dir atomically
// (the daemon watches the dir).
func writeConf(t *testing.T, d *testutil.Daemon, name, content string) {
	t.Helper()
	tmp := filepath.Join(d.Dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(d.CNIDir, name)); err != nil {
		t.Fatal(err)
	}
}

// startNetDaemon starts berthd with a ready CNI network and waits for
// NetworkReady.
func startNetDaemon(t *testing.T, dropIns map[string]string) (*testutil.Daemon, *testNet) {
	t.Helper()
	d := testutil.StartDaemon(t, testutil.DaemonOptions{BinDir: binDir, DropIns: dropIns})
	tn := newTestNet(t, d.Dir)
	t.Cleanup(func() { removeAllPods(d) })
	writeConf(t, d, "10-test.conflist", tn.conflist("bridge"))
	waitNetworkReady(t, d, true)
	return d, tn
}

// removeAllPods runs before the daemon is stopped, so a test that failed
// half-way still gets its CNI DEL (iptables rules, IP allocations) done.
func removeAllPods(d *testutil.Daemon) {
	if d.Runtime == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return
	}
	for _, p := range resp.GetItems() {
		d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.GetId()})
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func networkReady(t *testing.T, d *testutil.Daemon) *runtimeapi.RuntimeCondition {
	t.Helper()
	resp, err := d.Runtime.Status(ctxT(t, 10*time.Second), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	for _, c := range resp.GetStatus().GetConditions() {
		if c.GetType() == runtimeapi.NetworkReady {
			return c
		}
	}
	t.Fatal("no NetworkReady condition")
	return nil
}

func waitNetworkReady(t *testing.T, d *testutil.Daemon, want bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := networkReady(t, d)
		if c.GetStatus() == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("NetworkReady stayed %v: %s %s", c.GetStatus(), c.GetReason(), c.GetMessage())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// podConfig is a kubelet-like pod: own network and IPC, a PID
// namespace per container (so no holder process).
func podConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "e2e", Uid: "uid-" + name, Attempt: 0},
		Hostname: name,
		Labels:   map[string]string{"app": name},
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
	}
}

func runPod(t *testing.T, d *testutil.Daemon, cfg *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	resp, err := d.Runtime.RunPodSandbox(ctxT(t, 30*time.Second), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox %s: %v", cfg.GetMetadata().GetName(), err)
	}
	return resp.GetPodSandboxId()
}

func stopPod(t *testing.T, d *testutil.Daemon, id string) {
	t.Helper()
	if _, err := d.Runtime.StopPodSandbox(ctxT(t, 30*time.Second), &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatalf("StopPodSandbox %s: %v", id, err)
	}
}

func removePod(t *testing.T, d *testutil.Daemon, id string) {
	t.Helper()
	if _, err := d.Runtime.RemovePodSandbox(ctxT(t, 30*time.Second), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatalf("RemovePodSandbox %s: %v", id, err)
	}
}

// podInfo is the part of PodSandboxStatus's verbose info the tests read.
type podInfo struct {
	NetNS          string `json:"netns"`
	IPCNS          string `json:"ipcns"`
	UTSNS          string `json:"utsns"`
	PIDNS          string `json:"pidns"`
	HolderPID      int    `json:"holder_pid"`
	ShmPath        string `json:"shm_path"`
	ResolvConfPath string `json:"resolv_conf_path"`
	HostnamePath   string `json:"hostname_path"`
	HostsPath      string `json:"hosts_path"`
	CgroupParent   string `json:"cgroup_parent"`
}

func podStatus(t *testing.T, d *testutil.Daemon, id string) (*runtimeapi.PodSandboxStatus, podInfo) {
	t.Helper()
	resp, err := d.Runtime.PodSandboxStatus(ctxT(t, 10*time.Second), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		t.Fatalf("PodSandboxStatus %s: %v", id, err)
	}
	var info podInfo
	if err := json.Unmarshal([]byte(resp.GetInfo()["info"]), &info); err != nil {
		t.Fatalf("verbose info: %v: %q", err, resp.GetInfo())
	}
	return resp.GetStatus(), info
}

func wantCode(t *testing.T, err error, code codes.Code, contains string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("want %v, got %v", code, err)
	}
	if contains != "" && !strings.Contains(status.Convert(err).Message(), contains) {
		t.Fatalf("error %q does not name %q", status.Convert(err).Message(), contains)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hostState is what a pod may leave behind on the host: mounts under the
// daemon dir, veths, per-pod iptables chains and rules, IP allocations,
// pinned namespace files and pod records.
type hostState map[string][]string

func snapshotHost(t *testing.T, d *testutil.Daemon, tn *testNet) hostState {
	t.Helper()
	s := hostState{}
	for _, line := range strings.Split(readFile(t, "/proc/self/mountinfo"), "\n") {
		if strings.Contains(line, d.Dir) {
			s["mounts"] = append(s["mounts"], strings.Fields(line)[4])
		}
	}
	// Only what belongs to this test's network counts: other tests (and
	// other berth daemons) may be creating pods on the same host.
	if tn != nil {
		if out, err := exec.Command("ip", "-o", "link", "show", "master", tn.Bridge).Output(); err == nil {
			for _, line := range strings.Split(string(out), "\n") {
				if f := strings.Fields(line); len(f) > 1 {
					s["veths"] = append(s["veths"], f[1])
				}
			}
		}
		for _, table := range []string{"nat", "filter"} {
			for _, line := range strings.Split(run(t, "iptables-save", "-t", table), "\n") {
				if strings.Contains(line, tn.Prefix) || strings.Contains(line, `\"`+tn.Name+`\"`) || strings.Contains(line, `"`+tn.Name+`"`) {
					s["iptables"] = append(s["iptables"], line)
				}
			}
		}
	}
	if tn != nil {
		ents, _ := os.ReadDir(filepath.Join(tn.DataDir, tn.Name))
		for _, e := range ents {
			if e.Name() != "lock" && !strings.HasPrefix(e.Name(), "last_reserved_ip") {
				s["ipam"] = append(s["ipam"], e.Name())
			}
		}
	}
	for _, sub := range []string{"run/ns/net", "run/ns/ipc", "run/ns/uts", "run/pods", "state/pods"} {
		ents, _ := os.ReadDir(filepath.Join(d.Dir, sub))
		for _, e := range ents {
			s[sub] = append(s[sub], e.Name())
		}
	}
	for _, v := range s {
		sort.Strings(v)
	}
	return s
}

func assertSameHost(t *testing.T, before, after hostState) {
	t.Helper()
	keys := map[string]bool{}
	for k := range before {
		keys[k] = true
	}
	for k := range after {
		keys[k] = true
	}
	for k := range keys {
		if strings.Join(before[k], "\n") != strings.Join(after[k], "\n") {
			t.Errorf("leaked %s:\nbefore: %q\nafter:  %q", k, before[k], after[k])
		}
	}
}
