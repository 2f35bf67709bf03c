package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// statsDaemon starts berthd with a CNI network, metrics on a unix
// socket in its directory and the given stats period, and returns the
// metrics socket.
func statsDaemon(t *testing.T, period string, registriesConf string) (*testutil.Daemon, *testNet, string) {
	t.Helper()
	d := testutil.NewDaemon(t, testutil.DaemonOptions{BinDir: binDir})
	metricsSock := filepath.Join(d.Dir, "metrics.sock")
	d.WriteDropIn(t, "50-stats.toml", fmt.Sprintf(`[berth.metrics]
enable_metrics = true
metrics_socket = %q

[berth.stats]
stats_collection_period = %q
`, metricsSock, period))
	if registriesConf != "" {
		d.WriteRegistriesConf(t, registriesConf)
	}
	d.Start(t)
	tn := newTestNet(t, d.Dir)
	writeConf(t, d, "10-test.conflist", tn.conflist("bridge"))
	waitNetworkReady(t, d, true)
	return d, tn, metricsSock
}

// unixHTTP is an HTTP client whose every request goes to the unix
// socket at path.
func unixHTTP(path string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
}

func httpUnixGet(t *testing.T, sock, path string) (int, string) {
	t.Helper()
	resp, err := unixHTTP(sock).Get("http://berth" + path)
	if err != nil {
		t.Fatalf("GET %s on %s: %v", path, sock, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// scrapeMetrics reads /metrics and parses it with the Prometheus text
// parser.
func scrapeMetrics(t *testing.T, sock string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := httpUnixGet(t, sock, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// counter is the value of the counter name{label=value}, 0 if absent.
func counter(fams map[string]*dto.MetricFamily, name, label, value string) float64 {
	for _, m := range fams[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// counterTotal sums every series of counter name.
func counterTotal(fams map[string]*dto.MetricFamily, name string) float64 {
	var sum float64
	for _, m := range fams[name].GetMetric() {
		sum += m.GetCounter().GetValue()
	}
	return sum
}

// TestStatsMetricsEndpoint: the operation counters move by exactly the
// test's own calls, and the info socket answers /info and /config.
func TestStatsMetricsEndpoint(t *testing.T) {
	d, _, sock := statsDaemon(t, "0s", "")
	before := scrapeMetrics(t, sock)
	ctx := ctxT(t, 30*time.Second)
	for range 3 {
		if _, err := d.Runtime.Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if _, err := d.Runtime.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := d.Runtime.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: "no-such-pod"})
	wantCode(t, err, codes.NotFound, "no-such-pod")
	_, err = d.Runtime.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: "no-such-container"})
	if status.Code(err) != codes.NotFound && status.Code(err) != codes.Unimplemented {
		t.Fatalf("ContainerStats of an unknown id: %v", err)
	}
	after := scrapeMetrics(t, sock)

	for _, c := range []struct {
		name, op string
		delta    float64
	}{
		{"berth_operations_total", "Version", 3},
		{"berth_operations_total", "ListPodSandboxStats", 2},
		{"berth_operations_total", "PodSandboxStats", 1},
		{"berth_operations_errors_total", "PodSandboxStats", 1},
		{"berth_operations_errors_total", "Version", 0},
		{"berth_operations_errors_total", "ListPodSandboxStats", 0},
	} {
		got := counter(after, c.name, "operation", c.op) - counter(before, c.name, "operation", c.op)
		if got != c.delta {
			t.Errorf("%s{operation=%q} moved by %v, want %v", c.name, c.op, got, c.delta)
		}
	}
	for _, name := range []string{"berth_operations_latency_seconds_total", "berth_processes_defunct", "go_goroutines", "process_resident_memory_bytes"} {
		if after[name] == nil {
			t.Errorf("no %s", name)
		}
	}

	info := filepath.Join(filepath.Dir(d.Socket), strings.TrimSuffix(filepath.Base(d.Socket), ".sock")+"-info.sock")
	code, body := httpUnixGet(t, info, "/info")
	var inf struct {
		StorageDriver string `json:"storage_driver"`
		StorageRoot   string `json:"storage_root"`
		CgroupDriver  string `json:"cgroup_driver"`
		Default       string `json:"default_runtime"`
	}
	if err := json.Unmarshal([]byte(body), &inf); err != nil || code != http.StatusOK {
		t.Fatalf("/info: %d %s", code, body)
	}
	if inf.StorageRoot != filepath.Join(d.Dir, "storage") || inf.CgroupDriver != "cgroupfs" || inf.Default != "runc" || inf.StorageDriver == "" {
		t.Errorf("/info: %s", body)
	}
	code, body = httpUnixGet(t, info, "/config")
	var cfg struct {
		Berth struct {
			API struct {
				Listen string `toml:"listen"`
			} `toml:"api"`
			Stats struct {
				Period string `toml:"stats_collection_period"`
			} `toml:"stats"`
		} `toml:"berth"`
	}
	if _, err := toml.Decode(body, &cfg); err != nil || code != http.StatusOK || cfg.Berth.API.Listen != d.Socket || cfg.Berth.Stats.Period != "0s" {
		t.Errorf("/config: %d %v %+v", code, err, cfg)
	}
	if code, _ = httpUnixGet(t, info, "/containers/no-such-container"); code == http.StatusOK {
		t.Errorf("/containers of an unknown id answered 200")
	}
}

// TestStatsPodNetwork: after traffic between two pods, both report it on
// eth0, in ListPodSandboxStats and in ListPodSandboxMetrics.
func TestStatsPodNetwork(t *testing.T) {
	d, tn, _ := statsDaemon(t, "0s", "")
	server := runPod(t, d, podConfig("stats-server"))
	client := runPod(t, d, podConfig("stats-client"))
	sst, sinfo := podStatus(t, d, server)
	_, cinfo := podStatus(t, d, client)
	if !strings.HasPrefix(sst.GetNetwork().GetIp(), tn.Prefix) {
		t.Fatalf("server IP %q", sst.GetNetwork().GetIp())
	}
	rxTx := func() map[string][2]uint64 {
		t.Helper()
		resp, err := d.Runtime.ListPodSandboxStats(ctxT(t, 10*time.Second), &runtimeapi.ListPodSandboxStatsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][2]uint64{}
		for _, s := range resp.GetStats() {
			i := s.GetLinux().GetNetwork().GetDefaultInterface()
			if i.GetName() != "eth0" {
				t.Fatalf("pod %s default interface %v", s.GetAttributes().GetId(), s.GetLinux().GetNetwork())
			}
			out[s.GetAttributes().GetId()] = [2]uint64{i.GetRxBytes().GetValue(), i.GetTxBytes().GetValue()}
		}
		return out
	}
	before := rxTx()

	const size = 300_000
	serveHTTP(t, sinfo.NetNS, strings.Repeat("x", size))
	var lastErr error
	for range 50 {
		out, err := exec.Command("nsenter", "--net="+cinfo.NetNS, "busybox", "wget", "-q", "-O", "-", "http://"+sst.GetNetwork().GetIp()+"/").Output()
		if lastErr = err; err == nil && len(out) == size {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if lastErr != nil {
		t.Fatalf("wget from the client pod: %v", lastErr)
	}
	after := rxTx()
	if tx := after[server][1] - before[server][1]; tx < size {
		t.Errorf("server pod sent %d bytes, want at least %d", tx, size)
	}
	if rx := after[client][0] - before[client][0]; rx < size {
		t.Errorf("client pod received %d bytes, want at least %d", rx, size)
	}

	resp, err := d.Runtime.ListPodSandboxMetrics(ctxT(t, 10*time.Second), &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, pm := range resp.GetPodMetrics() {
		for _, m := range pm.GetMetrics() {
			if pm.GetPodSandboxId() == server && m.GetName() == "container_network_transmit_bytes_total" && m.GetValue().GetValue() >= size {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("ListPodSandboxMetrics has no transmit bytes for the server pod: %v", resp)
	}
	st, err := d.Runtime.PodSandboxStats(ctxT(t, 10*time.Second), &runtimeapi.PodSandboxStatsRequest{PodSandboxId: server})
	if err != nil || st.GetStats().GetAttributes().GetMetadata().GetName() != "stats-server" || st.GetStats().GetLinux().GetNetwork() == nil {
		t.Fatalf("PodSandboxStats: %v %v", st, err)
	}
}

// TestStatsContainerCPUAndMemory: a container burning CPU shows about
// one core, one holding 64 MiB shows that working set. Skips while
// berthd has no container support.
func TestStatsContainerCPUAndMemory(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	reg.Push(t, "stats/busybox:1", testutil.BusyboxImage(t, testutil.ImageSpec{}))
	ref := reg.Ref("stats/busybox:1")
	d, _, metricsSock := statsDaemon(t, "1s", reg.RegistriesConf())
	ctx := ctxT(t, 2*time.Minute)
	if _, err := d.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		t.Fatal(err)
	}
	// The pull's blobs reach the image pull metrics.
	fams := scrapeMetrics(t, metricsSock)
	pulled := counterTotal(fams, "berth_image_pulls_bytes_total")
	if pulled < 1<<20 || counterTotal(fams, "berth_image_pulls_success_total") != 1 {
		t.Errorf("after one pull of a ~2 MB image: pulled bytes %v, successes %v", pulled, counterTotal(fams, "berth_image_pulls_success_total"))
	}
	podCfg := podConfig("stats-ctrs")
	pod := runPod(t, d, podCfg)
	start := func(name, script string) string {
		t.Helper()
		resp, err := d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
			PodSandboxId:  pod,
			SandboxConfig: podCfg,
			Config: &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: name},
				Image:    &runtimeapi.ImageSpec{Image: ref},
				Command:  []string{"/bin/sh", "-c", script},
				LogPath:  name + ".log",
				Labels:   map[string]string{"stats": name},
			},
		})
		if status.Code(err) == codes.Unimplemented {
			t.Skip("berthd has no container support yet")
		}
		if err != nil {
			t.Fatalf("CreateContainer %s: %v", name, err)
		}
		if _, err := d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: resp.GetContainerId()}); err != nil {
			t.Fatalf("StartContainer %s: %v", name, err)
		}
		return resp.GetContainerId()
	}
	burn := start("burn", "while :; do :; done")
	// 64 MiB in the pod's /dev/shm tmpfs: shared memory, charged to the
	// writer's cgroup and never inactive file cache.
	eat := start("eat", "head -c 67108864 /dev/zero > /dev/shm/fill && exec sleep 1000")
	t.Cleanup(func() {
		for _, id := range []string{burn, eat} { // sh as pid 1 ignores SIGTERM: no grace period
			d.Runtime.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 0})
		}
		d.Runtime.StopPodSandbox(context.Background(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod})
		d.Runtime.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod})
	})

	const mib = 1 << 20
	var cores float64
	var ws uint64
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(time.Second)
		b, err := d.Runtime.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: burn})
		if err != nil {
			t.Fatal(err)
		}
		e, err := d.Runtime.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: eat})
		if err != nil {
			t.Fatal(err)
		}
		cores = float64(b.GetStats().GetCpu().GetUsageNanoCores().GetValue()) / 1e9
		ws = e.GetStats().GetMemory().GetWorkingSetBytes().GetValue()
		// Near one core: the machine is shared, so allow a wide margin.
		if cores > 0.4 && cores < 1.3 && ws >= 64*mib && ws < 100*mib {
			break
		}
	}
	if cores <= 0.4 || cores >= 1.3 {
		t.Errorf("burning container uses %.2f cores, want about 1", cores)
	}
	if ws < 64*mib || ws >= 100*mib {
		t.Errorf("working set %d MiB, want 64 MiB plus a shell", ws/mib)
	}

	list, err := d.Runtime.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{
		Filter: &runtimeapi.ContainerStatsFilter{LabelSelector: map[string]string{"stats": "eat"}},
	})
	if err != nil || len(list.GetStats()) != 1 || list.GetStats()[0].GetAttributes().GetId() != eat {
		t.Fatalf("ListContainerStats by label: %v %v", list, err)
	}
	ps, err := d.Runtime.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: pod})
	if err != nil {
		t.Fatal(err)
	}
	lin := ps.GetStats().GetLinux()
	if len(lin.GetContainers()) != 2 || lin.GetMemory().GetWorkingSetBytes().GetValue() < 64*mib || lin.GetProcess().GetProcessCount().GetValue() < 2 {
		t.Errorf("pod stats: %v", lin)
	}
	// The info socket describes the container like CRI-O's /containers/{id}.
	info := filepath.Join(filepath.Dir(d.Socket), strings.TrimSuffix(filepath.Base(d.Socket), ".sock")+"-info.sock")
	code, body := httpUnixGet(t, info, "/containers/"+eat[:12])
	var ci struct {
		ID      string   `json:"id"`
		Name    string   `json:"name"`
		Pid     int      `json:"pid"`
		Sandbox string   `json:"sandbox"`
		LogPath string   `json:"log_path"`
		Root    string   `json:"root"`
		IPs     []string `json:"ip_addresses"`
	}
	if err := json.Unmarshal([]byte(body), &ci); err != nil || code != http.StatusOK {
		t.Fatalf("/containers/%s: %d %s", eat[:12], code, body)
	}
	pst, _ := podStatus(t, d, pod)
	if ci.ID != eat || ci.Name != "eat" || ci.Pid <= 0 || ci.Sandbox != pod || !strings.HasSuffix(ci.LogPath, "eat.log") ||
		ci.Root == "" || len(ci.IPs) == 0 || ci.IPs[0] != pst.GetNetwork().GetIp() {
		t.Errorf("/containers/%s: %s", eat[:12], body)
	}
	if code, _ := httpUnixGet(t, info, "/containers/no-such-container"); code != http.StatusNotFound {
		t.Errorf("/containers of an unknown id: %d", code)
	}

	// The writable layer is measured in the background; give it a moment.
	deadline = time.Now().Add(30 * time.Second)
	for {
		e, err := d.Runtime.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: eat})
		if err != nil {
			t.Fatal(err)
		}
		if wl := e.GetStats().GetWritableLayer(); wl != nil && wl.GetInodesUsed().GetValue() > 0 && wl.GetFsId().GetMountpoint() != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no writable layer stats: %v", e.GetStats())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestStatsOOMMetric: an OOM-killed container is counted in total and by
// name, and its per-name count goes when it is removed.
func TestStatsOOMMetric(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	reg.Push(t, "stats/busybox:1", testutil.BusyboxImage(t, testutil.ImageSpec{}))
	ref := reg.Ref("stats/busybox:1")
	d, _, metricsSock := statsDaemon(t, "0s", reg.RegistriesConf())
	ctx := ctxT(t, 2*time.Minute)
	if _, err := d.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		t.Fatal(err)
	}
	podCfg := podConfig("stats-oom")
	pod := runPod(t, d, podCfg)
	t.Cleanup(func() {
		d.Runtime.StopPodSandbox(context.Background(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod})
		d.Runtime.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod})
	})
	resp, err := d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod, SandboxConfig: podCfg,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "hog"},
			Image:    &runtimeapi.ImageSpec{Image: ref},
			Command:  []string{"/bin/sh", "-c", `exec awk 'BEGIN { s = "x"; while (1) s = s s }'`},
			LogPath:  "hog.log",
			Linux:    &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 32 << 20}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetContainerId()
	if _, err := d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := d.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			t.Fatal(err)
		}
		if st.GetStatus().GetState() == runtimeapi.ContainerState_CONTAINER_EXITED {
			if st.GetStatus().GetReason() != "OOMKilled" {
				t.Fatalf("reason %q, want OOMKilled", st.GetStatus().GetReason())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the memory hog never exited")
		}
		time.Sleep(100 * time.Millisecond)
	}
	fams := scrapeMetrics(t, metricsSock)
	if got := counterTotal(fams, "berth_containers_oom_total"); got != 1 {
		t.Errorf("berth_containers_oom_total = %v, want 1", got)
	}
	if got := counterTotal(fams, "berth_containers_oom_count_total"); got != 1 {
		t.Errorf("berth_containers_oom_count_total = %v, want 1", got)
	}
	if _, err := d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	fams = scrapeMetrics(t, metricsSock)
	if got := counterTotal(fams, "berth_containers_oom_count_total"); got != 0 {
		t.Errorf("per-name OOM count should go with the container, still %v", got)
	}
	if got := counterTotal(fams, "berth_containers_oom_total"); got != 1 {
		t.Errorf("berth_containers_oom_total after removal = %v, want 1", got)
	}
}
