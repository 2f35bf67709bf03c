package metrics

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/ociext"
)

// /info carries the spec extensions' report under cdi, hooks and
// default_mounts.
func TestInfoShowsExtensions(t *testing.T) {
	cfg := testConfig(t)
	report := ociext.Report{
		CDI:           ociext.CDIReport{SpecDirs: []string{"/etc/cdi"}, Devices: []string{"vendor.com/gpu=0"}, Errors: map[string][]string{"/etc/cdi/bad.yaml": {"parse error"}}},
		Hooks:         ociext.HooksReport{Dirs: []string{"/h"}, Hooks: []ociext.HookInfo{{File: "/h/a.json", Path: "/bin/true", Stages: []string{"prestart"}}}},
		DefaultMounts: ociext.MountsReport{File: "/m", Mounts: []ociext.DefaultMount{{Source: "/s", Destination: "/d"}}},
	}
	s, err := New().Serve(ServeOptions{Config: func() *config.Config { return cfg }, Extensions: func() ociext.Report { return report }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	code, body := get(t, unixClient(InfoSocketPath(cfg.Berth.API.Listen)), "http://berth/info")
	var info Info
	if err := json.Unmarshal([]byte(body), &info); err != nil || code != http.StatusOK {
		t.Fatalf("/info: %d %s %v", code, body, err)
	}
	if info.CDI == nil || info.CDI.Devices[0] != "vendor.com/gpu=0" || len(info.CDI.Errors["/etc/cdi/bad.yaml"]) != 1 ||
		info.Hooks == nil || info.Hooks.Hooks[0].Path != "/bin/true" || info.DefaultMounts == nil || info.DefaultMounts.Mounts[0].Destination != "/d" {
		t.Errorf("/info extensions: %s", body)
	}
}
