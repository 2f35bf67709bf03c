package metrics

import (
	"context"
	"encoding/json"
	"errors"
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

	"github.com/BurntSushi/toml"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
)

// unixClient speaks HTTP over the unix socket at path.
func unixClient(path string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// scrape fetches /metrics and parses it with the Prometheus text parser.
func scrape(t *testing.T, c *http.Client, url string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, c, url)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	return fams
}

// value is the value of the sample of family name whose labels include
// want; ok is false when there is none.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && have[k] == v
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Summary != nil:
			return float64(m.GetSummary().GetSampleCount()), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func testConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg := config.Default()
	dir := t.TempDir()
	cfg.Berth.API.Listen = filepath.Join(dir, "berth.sock")
	return cfg
}

func serve(t *testing.T, m *Metrics, cfg *config.Config, src ContainerInfoSource) *Server {
	t.Helper()
	s, err := m.Serve(ServeOptions{Config: func() *config.Config { return cfg }, Version: "1.2.3", Containers: src})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOperationsScrape(t *testing.T) {
	m := New()
	ic := m.UnaryServerInterceptor()
	call := func(method string, err error) {
		ic(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/runtime.v1.RuntimeService/" + method},
			func(context.Context, any) (any, error) { return nil, err })
	}
	call("Version", nil)
	call("Version", nil)
	call("RunPodSandbox", status.Error(codes.NotFound, "x"))
	call("PullImage", nil)
	call("PullImage", status.Error(codes.Unauthenticated, "no"))
	m.ImagePullBlob("application/vnd.oci.image.layer.v1.tar+gzip", 2<<20, 2<<20)
	m.ImageLayerReused("sha256:abc", 5<<20)
	m.ContainerOOM("web")
	m.ContainerOOM("web")
	m.EventDropped()

	cfg := testConfig(t)
	cfg.Berth.Metrics.Enable = true
	cfg.Berth.Metrics.Socket = filepath.Join(t.TempDir(), "metrics.sock")
	serve(t, m, cfg, nil)
	fams := scrape(t, unixClient(cfg.Berth.Metrics.Socket), "http://berth/metrics")

	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"berth_operations_total", map[string]string{"operation": "Version"}, 2},
		{"berth_operations_total", map[string]string{"operation": "RunPodSandbox"}, 1},
		{"berth_operations_errors_total", map[string]string{"operation": "RunPodSandbox"}, 1},
		{"berth_operations_errors_total", map[string]string{"operation": "PullImage"}, 1},
		{"berth_operations_latency_seconds_total", map[string]string{"operation": "Version"}, 2},
		{"berth_image_pulls_success_total", nil, 1},
		{"berth_image_pulls_failure_total", map[string]string{"error": "Unauthenticated"}, 1},
		{"berth_image_pulls_bytes_total", map[string]string{"size": "<10mb"}, 2 << 20},
		{"berth_image_pulls_skipped_bytes_total", map[string]string{"size": "<10mb"}, 5 << 20},
		{"berth_image_layer_reuse_total", map[string]string{"name": "sha256:abc"}, 1},
		{"berth_image_pulls_layer_size", nil, 1},
		{"berth_containers_oom_total", nil, 2},
		{"berth_containers_oom_count_total", map[string]string{"name": "web"}, 2},
		{"berth_containers_events_dropped_total", nil, 1},
	} {
		if got, ok := value(fams, c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if _, ok := value(fams, "berth_operations_errors_total", map[string]string{"operation": "Version"}); ok {
		t.Error("Version counted as an error")
	}
	for _, name := range []string{"berth_processes_defunct", "berth_operations_latency_seconds", "go_goroutines", "process_resident_memory_bytes"} {
		if fams[name] == nil {
			t.Errorf("no %s in the scrape", name)
		}
	}
	// The metrics endpoint serves metrics only.
	if code, _ := get(t, unixClient(cfg.Berth.Metrics.Socket), "http://berth/config"); code != http.StatusNotFound {
		t.Errorf("/config on the metrics endpoint: %d", code)
	}
}

// TestNoGlobalRegistry: two instances count apart.
func TestNoGlobalRegistry(t *testing.T) {
	a, b := New(), New()
	a.ObserveOperation("Version", time.Millisecond, nil)
	fa, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	fb, err := b.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	count := func(fams []*dto.MetricFamily) int {
		for _, f := range fams {
			if f.GetName() == "berth_operations_total" {
				return len(f.GetMetric())
			}
		}
		return 0
	}
	if count(fa) != 1 || count(fb) != 0 {
		t.Fatalf("a has %d operation series, b %d", count(fa), count(fb))
	}
	var nilMetrics *Metrics
	nilMetrics.ObserveOperation("Version", 0, nil) // a nil *Metrics records nothing
	nilMetrics.ContainerOOM("x")
	if _, err := nilMetrics.UnaryServerInterceptor()(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/x/Y"},
		func(context.Context, any) (any, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
}

func TestMetricsBindOnlyWhereConfigured(t *testing.T) {
	cfg := testConfig(t)
	s := serve(t, New(), cfg, nil)
	if s.MetricsAddr() != nil {
		t.Fatalf("metrics served while disabled, on %v", s.MetricsAddr())
	}
	if _, err := os.Stat(InfoSocketPath(cfg.Berth.API.Listen)); err != nil {
		t.Fatalf("info socket: %v", err)
	}

	cfg = testConfig(t)
	cfg.Berth.Metrics.Enable = true
	cfg.Berth.Metrics.Port = 0 // any free port, on the default host
	m := New()
	m.ObserveOperation("Status", time.Millisecond, nil)
	s = serve(t, m, cfg, nil)
	addr, ok := s.MetricsAddr().(*net.TCPAddr)
	if !ok || !addr.IP.IsLoopback() {
		t.Fatalf("metrics address %v, want loopback", s.MetricsAddr())
	}
	fams := scrape(t, http.DefaultClient, fmt.Sprintf("http://%s/metrics", addr))
	if v, _ := value(fams, "berth_operations_total", map[string]string{"operation": "Status"}); v != 1 {
		t.Fatalf("Status count %v over TCP", v)
	}
	// A network address never serves profiles.
	if code, _ := get(t, http.DefaultClient, fmt.Sprintf("http://%s/debug/pprof/", addr)); code != http.StatusNotFound {
		t.Fatalf("/debug/pprof/ on the metrics address: %d", code)
	}
}

type fakeContainers map[string]*ContainerInfo

func (f fakeContainers) ContainerInfo(id string) (*ContainerInfo, error) {
	if c, ok := f[id]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
}

func TestInfoEndpoints(t *testing.T) {
	cfg := testConfig(t)
	cfg.Berth.StorageDriver = "vfs"
	s := serve(t, New(), cfg, nil)
	c := unixClient(InfoSocketPath(cfg.Berth.API.Listen))

	code, body := get(t, c, "http://berth/info")
	var info Info
	if err := json.Unmarshal([]byte(body), &info); err != nil || code != http.StatusOK {
		t.Fatalf("/info: %d %s %v", code, body, err)
	}
	if info.StorageDriver != "vfs" || info.StorageRoot != cfg.Berth.Root || info.CgroupDriver != "cgroupfs" ||
		info.DefaultRuntime != "runc" || info.Version != "1.2.3" || info.CRISocket != cfg.Berth.API.Listen {
		t.Fatalf("/info: %+v", info)
	}

	code, body = get(t, c, "http://berth/config")
	var back config.Config
	if _, err := toml.Decode(body, &back); err != nil || code != http.StatusOK {
		t.Fatalf("/config: %d %v\n%s", code, err, body)
	}
	if back.Berth.API.Listen != cfg.Berth.API.Listen || back.Berth.Stats.CollectionPeriod != cfg.Berth.Stats.CollectionPeriod {
		t.Fatalf("/config does not round-trip: %+v", back.Berth)
	}

	if code, _ = get(t, c, "http://berth/containers/abc"); code != http.StatusServiceUnavailable {
		t.Fatalf("/containers without a source: %d", code)
	}
	s.Close()
	serve(t, New(), cfg, fakeContainers{"abc": {ID: "abc", Name: "web", Pid: 42, Sandbox: "pod1", IPs: []string{"10.0.0.2"}, LogPath: "/l", Root: "/r"}})
	code, body = get(t, c, "http://berth/containers/abc")
	var ci ContainerInfo
	if err := json.Unmarshal([]byte(body), &ci); err != nil || code != http.StatusOK || ci.Pid != 42 || ci.Sandbox != "pod1" || ci.IPs[0] != "10.0.0.2" {
		t.Fatalf("/containers/abc: %d %s", code, body)
	}
	if !strings.Contains(body, `"ip_addresses"`) || !strings.Contains(body, `"log_path"`) {
		t.Fatalf("field names: %s", body)
	}
	if code, _ = get(t, c, "http://berth/containers/nope"); code != http.StatusNotFound {
		t.Fatalf("/containers/nope: %d", code)
	}
	if code, _ = get(t, c, "http://berth/metrics"); code != http.StatusNotFound {
		t.Fatalf("/metrics on the info socket while disabled: %d", code)
	}
	// Go's profiles, on the info socket only.
	if code, body = get(t, c, "http://berth/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile:") {
		t.Fatalf("/debug/pprof/goroutine: %d %.200s", code, body)
	}
}

func TestInfoSocketStaleAndLive(t *testing.T) {
	cfg := testConfig(t)
	path := InfoSocketPath(cfg.Berth.API.Listen)
	if path != filepath.Join(filepath.Dir(cfg.Berth.API.Listen), "berth-info.sock") {
		t.Fatalf("info socket path %s", path)
	}
	// A stale socket file (nobody listening) is replaced.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	serve(t, New(), cfg, nil)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("info socket: %v %v", fi, err)
	}
	// A live one is refused.
	if _, err := New().Serve(ServeOptions{Config: func() *config.Config { return cfg }}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second server on a live socket: %v", err)
	}
}

func TestDefunctProcesses(t *testing.T) {
	if processState([]byte("12 (a) b) c) Z 1 2")) != 'Z' || processState([]byte("12 (sh) S 1")) != 'S' || processState([]byte("bad")) != 0 {
		t.Fatal("processState")
	}
	before, err := DefunctProcesses("/proc")
	if err != nil {
		t.Fatal(err)
	}
	// A child that exited and was not waited for is a zombie.
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
		if processState(b) == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("child never became a zombie")
		}
		time.Sleep(5 * time.Millisecond)
	}
	during, _ := DefunctProcesses("/proc")
	cmd.Wait()
	if during < 1 || during < before {
		t.Fatalf("defunct before %d, with a zombie %d", before, during)
	}
	if _, err := DefunctProcesses("/no/such/proc"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing proc: %v", err)
	}
}

func TestSizeBucket(t *testing.T) {
	for size, want := range map[int64]string{-1: "unknown", 0: "<1mb", 5 << 20: "<10mb", 50 << 20: "<100mb", 500 << 20: "<1gb", 5 << 30: "<10gb", 50 << 30: ">=10gb"} {
		if got := SizeBucket(size); got != want {
			t.Errorf("SizeBucket(%d) = %q, want %q", size, got, want)
		}
	}
}

func TestEventsDroppedIncludesBroadcaster(t *testing.T) {
	m := New()
	m.EventDropped()
	var n uint64 = 4
	m.CountEventsDropped(func() uint64 { return n })
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "berth_containers_events_dropped_total" {
			if v := f.GetMetric()[0].GetCounter().GetValue(); v != 5 {
				t.Fatalf("events dropped %v, want 5", v)
			}
			return
		}
	}
	t.Fatal("no berth_containers_events_dropped_total")
}
