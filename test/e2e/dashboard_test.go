package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// dashboardQueries are the PromQL expressions of a Grafana dashboard: every
// panel's targets and the query variables.
func dashboardQueries(t *testing.T, path string) []string {
	t.Helper()
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []string
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if v.Type == "query" {
			out = append(out, v.Definition)
		}
	}
	return out
}

// sampleLabels maps each sample name /metrics serves (a summary's and a
// histogram's _sum, _count and _bucket included) to its label names.
func sampleLabels(fams map[string]*dto.MetricFamily) map[string][]string {
	out := map[string][]string{}
	add := func(name string, labels []*dto.LabelPair, extra ...string) {
		for _, l := range labels {
			extra = append(extra, l.GetName())
		}
		out[name] = append(out[name], extra...)
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_SUMMARY:
				add(name, m.GetLabel(), "quantile")
				add(name+"_sum", m.GetLabel())
				add(name+"_count", m.GetLabel())
			case dto.MetricType_HISTOGRAM:
				add(name+"_bucket", m.GetLabel(), "le")
				add(name+"_sum", m.GetLabel())
				add(name+"_count", m.GetLabel())
			default:
				add(name, m.GetLabel())
			}
		}
	}
	return out
}

var (
	// selectorRE finds name{matchers} and label_values(name, ...).
	selectorRE = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}|label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	byRE       = regexp.MustCompile(`by\s*\(([^)]*)\)`)
)

// TestGrafanaDashboardQueriesExistingMetrics drives a berthd through what
// fills every series the dashboard in contrib/grafana shows (pulls that
// succeed, reuse layers and fail; an OOM-killed and a running container)
// and checks that each metric its queries name is on /metrics, with the
// labels the queries select and group by. berth_containers is checked
// for its values too.
func TestGrafanaDashboardQueriesExistingMetrics(t *testing.T) {
	queries := dashboardQueries(t, filepath.Join("..", "..", "contrib", "grafana", "berth-dashboard.json"))
	if len(queries) < 10 {
		t.Fatalf("only %d queries in the dashboard", len(queries))
	}

	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	reg.Push(t, "dash/busybox:1", testutil.BusyboxImage(t, testutil.ImageSpec{}))
	reg.Push(t, "dash/app:1", testutil.BusyboxImage(t, testutil.ImageSpec{Env: []string{"APP=1"}}))
	ref := reg.Ref("dash/busybox:1")
	d, _, metricsSock := statsDaemon(t, "0s", reg.RegistriesConf())
	ctx := ctxT(t, 3*time.Minute)
	for _, r := range []string{ref, reg.Ref("dash/app:1")} { // the second reuses the first's layer
		if _, err := d.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: r}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: reg.Ref("dash/missing:1")}}); err == nil {
		t.Fatal("pull of a missing image succeeded")
	}

	podCfg := podConfig("dash")
	pod := runPod(t, d, podCfg)
	t.Cleanup(func() { removeAllPods(d) })
	run := func(name string, cmd string, memory int64) string {
		resp, err := d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
			PodSandboxId: pod, SandboxConfig: podCfg,
			Config: &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: name}, Image: &runtimeapi.ImageSpec{Image: ref},
				Command: []string{"/bin/sh", "-c", cmd}, LogPath: name + ".log",
				Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: memory}},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: resp.GetContainerId()}); err != nil {
			t.Fatal(err)
		}
		return resp.GetContainerId()
	}
	hog := run("hog", `exec awk 'BEGIN { s = "x"; while (1) s = s s }'`, 32<<20)
	run("sleeper", "exec sleep 3600", 0)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		st, err := d.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: hog})
		if err != nil {
			t.Fatal(err)
		}
		if st.GetStatus().GetState() == runtimeapi.ContainerState_CONTAINER_EXITED {
			if st.GetStatus().GetReason() != "OOMKilled" {
				t.Fatalf("hog exited with reason %q, want OOMKilled", st.GetStatus().GetReason())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the memory hog never exited")
		}
	}

	fams := scrapeMetrics(t, metricsSock)
	samples := sampleLabels(fams)
	for state, want := range map[string]float64{"created": 0, "running": 1, "exited": 1, "unknown": 0} {
		var got float64 = -1
		for _, m := range fams["berth_containers"].GetMetric() {
			if m.GetLabel()[0].GetValue() == state {
				got = m.GetGauge().GetValue()
			}
		}
		if got != want {
			t.Errorf("berth_containers{state=%q} = %v, want %v", state, got, want)
		}
	}

	// Prometheus adds these at scrape time.
	scrapeLabels := []string{"instance", "job"}
	for _, q := range queries {
		found := selectorRE.FindAllStringSubmatch(q, -1)
		if len(found) == 0 {
			t.Errorf("query names no metric: %s", q)
			continue
		}
		var labelsOfQuery []string
		for _, m := range found {
			name := m[1] + m[3]
			labels, ok := samples[name]
			if !ok {
				t.Errorf("metric %s (in %s) is not on /metrics", name, q)
				continue
			}
			labelsOfQuery = append(labelsOfQuery, labels...)
			for _, lm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
				if !slices.Contains(labels, lm[1]) && !slices.Contains(scrapeLabels, lm[1]) {
					t.Errorf("query selects %s on %s, which has no such label: %s", lm[1], name, q)
				}
			}
		}
		for _, by := range byRE.FindAllStringSubmatch(q, -1) {
			for _, l := range strings.Split(by[1], ",") {
				if l = strings.TrimSpace(l); !slices.Contains(labelsOfQuery, l) && !slices.Contains(scrapeLabels, l) {
					t.Errorf("query groups by %s, a label none of its metrics has: %s", l, q)
				}
			}
		}
	}
}
