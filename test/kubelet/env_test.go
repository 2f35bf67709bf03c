//go:build kubelet

package kubelet

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/internal/testutil"
)

// nodeName is the kubelet's --hostname-override: static pods are named
// <manifest name>-<nodeName> in /pods.
const nodeName = "berth-e2e"

// image is what every manifest runs; registries.conf sends it to the
// in-test registry on 127.0.0.1.
const image = "docker.io/library/busybox:e2e"

// varLibKubelet is where the kubelet puts its device plugin socket
// whatever its --root-dir.
const varLibKubelet = "/var/lib/kubelet"

// env is one berthd, one in-test registry and one kubelet pointed at them.
type env struct {
	d   *testutil.Daemon
	reg *testutil.Registry
	// dir holds the kubelet's root dir, config, manifests, pod logs and log.
	dir, manifests, podLogs string
	// bridge is the CNI bridge of berth's test network (removed at cleanup).
	bridge string
	// port (HTTPS, anonymous + AlwaysAllow), roPort (read-only HTTP) and
	// healthzPort are the kubelet's, all on 127.0.0.1.
	port, roPort, healthzPort int
	kubelet                   *exec.Cmd
	kubeletExited             chan struct{}
	kubeletLog                *os.File
	gates                     map[string]bool
	// ownVarLib: /var/lib/kubelet did not exist before the run; the
	// kubelet's device manager creates it (its socket path is fixed).
	ownVarLib bool
	// metrics is berthd's Prometheus endpoint (a unix socket).
	metrics string
	// qosRoot, when set, is the kubelet's cgroupRoot: it then runs with
	// cgroupsPerQOS (pod cgroups of its own below qosRoot, which in-place
	// resize needs), and qosMade are the cgroup dirs the test made for it.
	qosRoot string
	qosMade []string
}

// baseGates are the feature gates of every kubelet run: the parts of the
// CRI of Kubernetes 1.37 that berth serves. ImageVolume and
// UserNamespacesSupport are GA and locked on in 1.37 (setting them off is
// refused); the image-volume and user-namespace scenarios rely on that.
var baseGates = map[string]bool{
	"CRIListStreaming":                        true,
	"EventedPLEG":                             true,
	"InPlacePodVerticalScaling":               true,
	"InPlacePodLevelResourcesVerticalScaling": true,
	"PodLevelResources":                       true,
}

// withGates is baseGates plus more.
func withGates(more map[string]bool) map[string]bool {
	out := map[string]bool{}
	for _, m := range []map[string]bool{baseGates, more} {
		for g, on := range m {
			out[g] = on
		}
	}
	return out
}

// startEnv starts the registry, berthd with a CNI network and a
// registries.conf rewriting docker.io/library/busybox to the registry,
// then the kubelet.
func startEnv(t *testing.T) *env {
	t.Helper()
	e := &env{}
	t.Cleanup(e.removeQoSCgroups) // last: after berthd removed the pods
	img := testutil.BusyboxImage(t, testutil.ImageSpec{
		ExtraLayers: []map[string]string{{
			"www/index.html": "hello from berth\n",
			// user app (1000) is a member of group 50, for the
			// supplementalGroupsPolicy scenario.
			"etc/group": "root:x:0:\napp:x:1000:\nstaff:x:50:app\nnogroup:x:65534:\n",
		}},
	})
	e.reg = testutil.StartRegistry(t, testutil.RegistryOptions{})
	e.reg.Push(t, "busybox:e2e", img)

	e.d = testutil.NewDaemon(t, testutil.DaemonOptions{BinDir: binDir})
	t.Cleanup(func() { e.d.RemoveAllPods(time.Minute) })
	e.d.WriteRegistriesConf(t, fmt.Sprintf(`[[registry]]
prefix = "docker.io/library/busybox"
location = "%s/busybox"
insecure = true
`, e.reg.Host))
	e.writeCNI(t)
	e.metrics = filepath.Join(e.d.Dir, "metrics.sock")
	e.d.WriteDropIn(t, "50-metrics.toml", fmt.Sprintf("[berth.metrics]\nenable_metrics = true\nmetrics_socket = %q\n", e.metrics))
	e.d.Start(t)

	dir, err := os.MkdirTemp("/tmp", "bk")
	if err != nil {
		t.Fatal(err)
	}
	e.dir, e.manifests, e.podLogs = dir, filepath.Join(dir, "manifests"), filepath.Join(dir, "pod-logs")
	for _, sub := range []string{e.manifests, e.podLogs, filepath.Join(dir, "root")} {
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(varLibKubelet); os.IsNotExist(err) {
		e.ownVarLib = true
	}
	t.Cleanup(func() { e.cleanupKubelet(t) })
	e.port, e.roPort, e.healthzPort = freePort(t), freePort(t), freePort(t)
	e.startKubelet(t, baseGates)
	return e
}

// writeCNI gives berth a bridge network of its own (bridge, host-local,
// portmap, loopback), apart from the e2e tests' 10.123.x.0/24 ones.
func (e *env) writeCNI(t *testing.T) {
	n := os.Getpid() % 250
	e.bridge = fmt.Sprintf("bkb%d", n)
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "berth-kubelet-e2e", "plugins": [
 {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
  "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": "10.124.%d.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
 {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
 {"type": "loopback"}]}`, e.bridge, filepath.Join(e.d.Dir, "ipam"), n)
	if err := os.WriteFile(filepath.Join(e.d.CNIDir, "10-kubelet-e2e.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", e.bridge).Run() })
}

// kubeletConfig is the KubeletConfiguration for a standalone kubelet on
// loopback that never touches the host's /var/lib/kubelet or /var/log/pods.
func (e *env) kubeletConfig() string {
	var gates strings.Builder
	if len(e.gates) > 0 {
		gates.WriteString("featureGates:\n")
		for g, on := range e.gates {
			fmt.Fprintf(&gates, "  %s: %t\n", g, on)
		}
	}
	qos := "cgroupsPerQOS: false"
	if e.qosRoot != "" {
		qos = "cgroupsPerQOS: true\ncgroupRoot: " + e.qosRoot
	}
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %d
readOnlyPort: %d
healthzBindAddress: 127.0.0.1
healthzPort: %d
staticPodPath: %s
fileCheckFrequency: 1s
syncFrequency: 10s
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization:
  mode: AlwaysAllow
containerRuntimeEndpoint: unix://%s
cgroupDriver: cgroupfs
%s
enforceNodeAllocatable: []
failSwapOn: false
failCgroupV1: false
podLogsDir: %s
containerLogMaxSize: 16Ki
containerLogMaxFiles: 50
containerLogMonitorInterval: 3s
evictionHard: {"memory.available": "1Mi", "nodefs.available": "1%%", "nodefs.inodesFree": "1%%", "imagefs.available": "1%%", "imagefs.inodesFree": "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
resolvConf: /etc/resolv.conf
makeIPTablesUtilChains: false
%s`, e.port, e.roPort, e.healthzPort, e.manifests, e.d.Socket, qos, e.podLogs, gates.String())
}

// startKubelet writes the config with the given feature gates and starts
// the kubelet, waiting for /healthz and the read-only /pods.
func (e *env) startKubelet(t *testing.T, gates map[string]bool) {
	t.Helper()
	e.gates = gates
	cfg := filepath.Join(e.dir, "kubelet.yaml")
	if err := os.WriteFile(cfg, []byte(e.kubeletConfig()), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.OpenFile(filepath.Join(e.dir, "kubelet.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(logf, "=== kubelet_test: starting kubelet, gates %v\n", gates)
	cmd := exec.Command(kubeletBin, "--config", cfg, "--root-dir", filepath.Join(e.dir, "root"),
		"--cert-dir", filepath.Join(e.dir, "pki"), "--hostname-override", nodeName, "--v", "2")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kubelet: %v", err)
	}
	e.kubelet, e.kubeletLog, e.kubeletExited = cmd, logf, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(e.kubeletExited)
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-e.kubeletExited:
			t.Fatalf("kubelet exited at start: %v\n%s", cmd.ProcessState, e.kubeletLogTail(60))
		default:
		}
		if _, err := e.pods(); err == nil {
			if b, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/healthz", e.healthzPort)); err == nil && string(b) == "ok" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubelet not healthy within 60s\n%s", e.kubeletLogTail(60))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// useQoSCgroups makes the next kubelet start run with cgroupsPerQOS
// below a cgroup root of the test's own (made here in every hierarchy).
func (e *env) useQoSCgroups(t *testing.T) {
	t.Helper()
	e.qosRoot = fmt.Sprintf("/berth-kubelet-e2e-%d", os.Getpid())
	made, err := cgroups.Ensure(e.qosRoot)
	if err != nil {
		t.Fatal(err)
	}
	e.qosMade = append(e.qosMade, made...)
}

// removeQoSCgroups removes the cgroup trees below the dirs
// useQoSCgroups made (the kubelet leaves its QoS cgroups), deepest
// first; a cgroup still in use stays and is reported.
func (e *env) removeQoSCgroups() {
	for i := len(e.qosMade) - 1; i >= 0; i-- {
		var dirs []string
		filepath.WalkDir(e.qosMade[i], func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for j := len(dirs) - 1; j >= 0; j-- {
			if err := os.Remove(dirs[j]); err != nil && !os.IsNotExist(err) {
				fmt.Fprintf(os.Stderr, "kubelet e2e: cgroup %s left: %v\n", dirs[j], err)
			}
		}
	}
}

// stopKubelet sends SIGTERM (pods keep running) and waits.
func (e *env) stopKubelet(t *testing.T) {
	t.Helper()
	if e.kubelet == nil {
		return
	}
	e.kubelet.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.kubeletExited:
	case <-time.After(30 * time.Second):
		e.kubelet.Process.Kill()
		<-e.kubeletExited
		t.Errorf("kubelet did not exit within 30s of SIGTERM; killed")
	}
	e.kubelet = nil
	e.kubeletLog.Close()
}

// cleanupKubelet stops the kubelet, prints its log tail on failure, removes
// its /var/log/containers symlinks, unmounts its root dir and deletes it.
func (e *env) cleanupKubelet(t *testing.T) {
	e.stopKubelet(t)
	if t.Failed() || os.Getenv("KUBELET_E2E_LOG") != "" {
		t.Logf("kubelet log (last 150 lines of %s/kubelet.log):\n%s", e.dir, e.kubeletLogTail(150))
	}
	if keep := os.Getenv("KUBELET_E2E_KEEP"); keep != "" { // a directory for CI artifacts
		os.MkdirAll(keep, 0o755)
		exec.Command("cp", filepath.Join(e.dir, "kubelet.log"), keep).Run()
		os.WriteFile(filepath.Join(keep, "berthd.log"), []byte(e.d.Log()), 0o644)
	}
	links, _ := filepath.Glob("/var/log/containers/*.log")
	for _, l := range links {
		if dst, err := os.Readlink(l); err == nil && strings.HasPrefix(dst, e.dir+"/") {
			os.Remove(l)
		}
	}
	if e.ownVarLib {
		os.RemoveAll(varLibKubelet)
	}
	for _, m := range mountsUnder(e.dir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", m, err)
		}
	}
	if err := os.RemoveAll(e.dir); err != nil {
		t.Errorf("remove %s: %v", e.dir, err)
	}
}

// kubeletLogTail returns the last n lines of the kubelet's log.
func (e *env) kubeletLogTail(n int) string {
	b, _ := os.ReadFile(filepath.Join(e.dir, "kubelet.log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// kubeletLogGrep returns the kubelet log lines containing any of subs.
func (e *env) kubeletLogGrep(subs ...string) []string {
	b, _ := os.ReadFile(filepath.Join(e.dir, "kubelet.log"))
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, s := range subs {
			if strings.Contains(l, s) {
				out = append(out, l)
				break
			}
		}
	}
	return out
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// mountsUnder lists mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append([]string{f[4]}, out...)
		}
	}
	return out
}
