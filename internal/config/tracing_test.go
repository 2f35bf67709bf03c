package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestTracingKeys(t *testing.T) {
	if d := Default().Berth.Tracing; d.Enable || d.SamplingRatePerMillion != 0 {
		t.Fatalf("tracing is on by default: %+v", d)
	}
	load := func(content string) (*Config, error) {
		dir := t.TempDir()
		write(t, filepath.Join(dir, "d", "50-tracing.toml"), content)
		return Loader{File: filepath.Join(dir, "berth.toml"), DropInDir: filepath.Join(dir, "d")}.Load()
	}
	c, err := load("[berth.tracing]\nenable_tracing = true\ntracing_endpoint = \"otel.local:4317\"\ntracing_sampling_rate_per_million = 1000000\n")
	if err != nil {
		t.Fatal(err)
	}
	if tr := c.Berth.Tracing; !tr.Enable || tr.Endpoint != "otel.local:4317" || tr.SamplingRatePerMillion != 1_000_000 {
		t.Fatalf("loaded %+v", tr)
	}
	for content, key := range map[string]string{
		"[berth.tracing]\ntracing_endpoint = \"otel.local\"\n":           "berth.tracing.tracing_endpoint",
		"[berth.tracing]\ntracing_endpoint = \"otel.local:0\"\n":         "berth.tracing.tracing_endpoint",
		"[berth.tracing]\ntracing_sampling_rate_per_million = 1000001\n": "berth.tracing.tracing_sampling_rate_per_million",
		"[berth.tracing]\ntracing_sampling_rate_per_million = -1\n":      "berth.tracing.tracing_sampling_rate_per_million",
	} {
		if _, err := load(content); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%q: error %v, want one naming %s", content, err, key)
		}
	}
}
