//go:build e2enode

package e2enode

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// nodeName is the suite's --node-name (the kubelet's hostname override).
const nodeName = "berth-e2e-node"

// cgroupRoot is the kubelet's cgroupRoot. It stays the root: specs of
// the suite ("Kubelet Cgroup Manager") look for /kubepods there. The run
// removes the kubepods trees it made (newKubepods).
const cgroupRoot = "/"

// varLibKubelet is the suite's kubelet root dir (services.KubeletRootDirectory).
const varLibKubelet = "/var/lib/kubelet"

// hiddenCommands are left out of the suite's PATH. With systemd-run on
// PATH the suite starts the kubelet as a transient systemd unit, but no
// systemd runs here (PID 1 is the VM's init); without it the suite runs
// the kubelet as its own child. journalctl would make it fetch logs from
// journald, which is not running either.
var hiddenCommands = map[string]bool{"systemd-run": true, "systemctl": true, "journalctl": true}

// TestBuildImages writes the suite's images, built offline, into the OCI
// layout $E2E_NODE_IMAGES, each named by its public name.
func TestBuildImages(t *testing.T) {
	dir := mustEnv(t, "E2E_NODE_IMAGES")
	bins := mustEnv(t, "E2E_NODE_BIN")
	start := time.Now()
	imgs, err := e2eImages(bins, filepath.Join(binDir, "berth-pause"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	for _, i := range imgs {
		testutil.SaveOCILayout(t, i.img, dir, i.Name)
	}
	t.Logf("%d images written to %s in %s", len(imgs), dir, time.Since(start).Round(time.Millisecond))
	for name, why := range unbuildable {
		t.Logf("not built: %s: %s", name, why)
	}
}

// TestNodeE2E serves the images, starts berthd and runs the suite.
func TestNodeE2E(t *testing.T) {
	bins := mustEnv(t, "E2E_NODE_BIN")
	report := mustEnv(t, "E2E_NODE_REPORT")
	if err := os.MkdirAll(report, 0o755); err != nil {
		t.Fatal(err)
	}
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	names := pushImages(t, reg, mustEnv(t, "E2E_NODE_IMAGES"))

	// Cleanups run last-registered first: the pods go (removeAllPods),
	// then berthd, then what the kubelet left, then the cgroups.
	made := newKubepods()
	t.Cleanup(func() { removeCgroups(made()) })
	work, err := os.MkdirTemp("/tmp", "ben")
	if err != nil {
		t.Fatal(err)
	}
	before := snapshotHost()
	t.Cleanup(func() { cleanupNode(t, work, before) })
	d := testutil.NewDaemon(t, testutil.DaemonOptions{BinDir: binDir})
	t.Cleanup(func() { d.RemoveAllPods(2 * time.Minute) })
	t.Cleanup(func() { os.WriteFile(filepath.Join(report, "berthd.log"), []byte(d.Log()), 0o644) })
	d.WriteRegistriesConf(t, registriesConf(reg.Host))
	writeCNI(t, d)
	d.Start(t)
	prePull(t, d, names)

	pathDir := filepath.Join(work, "path")
	if err := pathWithout(pathDir, hiddenCommands); err != nil {
		t.Fatal(err)
	}
	kubeletCfg := filepath.Join(work, "kubelet-base.yaml")
	if err := os.WriteFile(kubeletCfg, []byte(kubeletConfig()), 0o644); err != nil {
		t.Fatal(err)
	}

	// ginkgo runs a precompiled suite in the suite's directory, where the
	// suite writes its kubeconfig, kubelet config and static pod dir and
	// looks for the kubelet: links in the work dir keep all that there.
	for _, f := range []string{"e2e_node.test", "kubelet"} {
		if err := os.Symlink(filepath.Join(bins, f), filepath.Join(work, f)); err != nil {
			t.Fatal(err)
		}
	}
	args := ginkgoArgs(filepath.Join(work, "e2e_node.test"))
	args = append(args, "--",
		"--container-runtime-endpoint=unix://"+d.Socket,
		"--image-service-endpoint=unix://"+d.Socket,
		"--node-name="+nodeName,
		"--report-dir="+report,
		// berth pre-pulled what is built (prePull): the suite's own
		// pre-pull asks for images that cannot be built offline.
		"--prepull-images=false",
		"--kubelet-config-file="+kubeletCfg,
		"--kubelet-flags="+strings.Join(kubeletFlags(), " "),
	)
	logf, err := os.Create(filepath.Join(report, "ginkgo.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(bins, "ginkgo"), args...)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "PATH="+pathDir)
	cmd.Stdout = io.MultiWriter(os.Stdout, logf)
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	t.Logf("running %s %s", cmd.Path, strings.Join(args, " "))
	start := time.Now()
	runErr := cmd.Run()
	// Kill what the suite left (the kubelet, the services process).
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	elapsed := time.Since(start).Round(time.Second)
	for _, f := range []string{"kubelet.log", "services.log"} {
		exec.Command("cp", filepath.Join(work, f), report).Run()
	}

	res, err := readJUnit(filepath.Join(report, "junit_01.xml"))
	if err != nil {
		t.Fatalf("suite did not report (%v): %v; see %s/ginkgo.log", runErr, err, report)
	}
	known, err := readKnown(os.Getenv("E2E_NODE_KNOWN"))
	if err != nil {
		t.Fatal(err)
	}
	unexpected := res.unexpected(known)
	summary := fmt.Sprintf("%d passed, %d failed, %d skipped (%d specs not selected by focus/skip)",
		len(res.Passed), len(res.Failed), len(res.Skipped), res.NotSelected)
	os.WriteFile(filepath.Join(report, "summary.txt"), []byte(res.table(known)+summary+"\n"), 0o644)
	fmt.Printf("\n%s\ne2e-node: %s in %s (JUnit: %s/junit_01.xml)\n", res.table(known), summary, elapsed, report)
	if len(unexpected) > 0 {
		t.Errorf("%d failures not listed in %s:\n  %s", len(unexpected), os.Getenv("E2E_NODE_KNOWN"), strings.Join(unexpected, "\n  "))
	}
}

// ginkgoArgs are the ginkgo CLI's flags for the precompiled suite.
func ginkgoArgs(suite string) []string {
	procs := os.Getenv("E2E_NODE_PROCS")
	if procs == "" {
		procs = "1"
	}
	timeout := os.Getenv("E2E_NODE_TIMEOUT")
	if timeout == "" {
		timeout = "22m"
	}
	args := []string{"--procs=" + procs, "--timeout=" + timeout, "--no-color", "--poll-progress-after=120s"}
	if f := os.Getenv("E2E_NODE_FOCUS"); f != "" {
		args = append(args, "--focus="+f)
	}
	if s := os.Getenv("E2E_NODE_SKIP"); s != "" {
		args = append(args, "--skip="+s)
	}
	if os.Getenv("E2E_NODE_DRY_RUN") != "" {
		args = append(args, "--dry-run", "-v")
	}
	return append(args, suite)
}

// kubeletFlags go after the suite's own kubelet flags and so win. The
// suite, without systemd, puts the kubelet in /kubelet, every other
// process of the machine in /system and names /docker-daemon as the
// runtime's cgroup; on a shared host only the kubelet's own cgroups are
// its business, so those are cleared.
func kubeletFlags() []string {
	return []string{"--kubelet-cgroups=", "--system-cgroups=", "--runtime-cgroups="}
}

// kubeletConfig is the suite's base KubeletConfiguration (the suite then
// sets authentication, ports and the static pod dir): the suite's
// defaults (test/e2e_node/jenkins/default-kubelet-config.yaml) adapted to
// this host as in test/kubelet: cgroup v1 hybrid through cgroupfs, no
// swap check, node allocatable not enforced (the kubelet cannot own the
// root cgroups of a shared machine), and eviction and image GC
// thresholds that a shared development disk does not trip.
func kubeletConfig() string {
	return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: ` + cgroupRoot + `
cgroupsPerQOS: true
enforceNodeAllocatable: []
failSwapOn: false
failCgroupV1: false
volumeStatsAggPeriod: 10s
serializeImagePulls: false
fileCheckFrequency: 10s
podCIDR: 10.100.0.0/24
evictionPressureTransitionPeriod: 30s
evictionHard: {"memory.available": "100Mi", "nodefs.available": "1%", "nodefs.inodesFree": "1%", "imagefs.available": "1%", "imagefs.inodesFree": "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
makeIPTablesUtilChains: false
`
}

// pushImages pushes every image of the layout to reg as its public name
// (the registry host as the first path element) and returns the names.
func pushImages(t *testing.T, reg *testutil.Registry, dir string) []string {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("images (TestBuildImages writes them): %v", err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, desc := range m.Manifests {
		name := desc.Annotations[testutil.RefNameAnnotation]
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatalf("image %s: %v", name, err)
		}
		reg.Push(t, name, img)
		names = append(names, name)
	}
	return names
}

// rewrittenRegistries are sent to the local registry, as
// <local>/<registry>/<path>: the suite's images live there, and every
// other name under them fails to pull there instead of reaching for the
// internet (this machine has none and must not resolve public names).
var rewrittenRegistries = []string{
	"registry.k8s.io", "*.k8s.io", "gcr.io", "*.gcr.io", "docker.io", "quay.io",
	"*.pkg.dev", "mcr.microsoft.com", "ghcr.io",
}

// registriesConf rewrites (location, not mirror: a mirror falls back to
// the public registry) each of rewrittenRegistries to host.
func registriesConf(host string) string {
	var b strings.Builder
	b.WriteString("unqualified-search-registries = [\"docker.io\"]\n")
	for _, r := range rewrittenRegistries {
		loc := host + "/" + strings.TrimPrefix(r, "*.")
		fmt.Fprintf(&b, "\n[[registry]]\nprefix = %q\nlocation = %q\ninsecure = true\n", r, loc)
	}
	return b.String()
}

// prePull pulls every built image through CRI before the suite starts, as
// the suite's own pre-pull would, so that specs with imagePullPolicy
// Never find them.
func prePull(t *testing.T, d *testutil.Daemon, names []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, n := range names {
		if _, err := d.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: n}}); err != nil {
			t.Fatalf("pre-pull %s: %v", n, err)
		}
	}
}

// writeCNI gives berth a bridge network of its own (bridge, host-local,
// portmap, loopback), apart from the other suites' subnets.
func writeCNI(t *testing.T, d *testutil.Daemon) {
	bridge := "bnode0"
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "berth-e2e-node", "plugins": [
 {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
  "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": "10.100.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
 {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
 {"type": "loopback"}]}`, bridge, filepath.Join(d.Dir, "ipam"))
	if err := os.WriteFile(filepath.Join(d.CNIDir, "10-e2e-node.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", bridge).Run() })
}

// pathWithout makes dir a directory of links to every command on $PATH
// except hidden, first match winning as a shell would.
func pathWithout(dir string, hidden map[string]bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, p := range filepath.SplitList(os.Getenv("PATH")) {
		entries, err := os.ReadDir(p)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if hidden[e.Name()] {
				continue
			}
			link := filepath.Join(dir, e.Name())
			if _, err := os.Lstat(link); err == nil {
				continue
			}
			if err := os.Symlink(filepath.Join(p, e.Name()), link); err != nil {
				return fmt.Errorf("PATH link %s: %w", link, err)
			}
		}
	}
	return nil
}
