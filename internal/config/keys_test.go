package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestLoadReportsEveryProblemWithFileAndLine: unknown keys (with the key
// meant), a retired key and bad values in two files come back together,
// each with its file and line.
func TestLoadReportsEveryProblemWithFileAndLine(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "berth.toml")
	write(t, main, `# main file
[berth]
root = "relative/root"

[berth.runtime]
log_levle = "debug"
cgroup_manager = "cgroupv3"
log_level = "info"   # set, so no hint about it below

[berth.image]
default_transport = "docker://"
`)
	dropIn := filepath.Join(dir, "d", "50-x.toml")
	write(t, dropIn, "[berth.nope]\nx = 1\n\n[berth.runtime.runtimes.runc]\nruntime_pth = \"/bin/runc\"\n[berth]\nlog_level = \"debug\"\n")
	_, err := Loader{File: main, DropInDir: filepath.Join(dir, "d")}.Load()
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("want a *LoadError, got %v", err)
	}
	want := []string{
		main + ":6: berth.runtime.log_levle: unknown key (did you mean berth.runtime.log_level?)",
		main + ":11: berth.image.default_transport: removed: berth pulls only from registries",
		dropIn + ":1: berth.nope: unknown key",
		dropIn + ":5: berth.runtime.runtimes.runc.runtime_pth: unknown key (did you mean berth.runtime.runtimes.runc.runtime_path?)",
		dropIn + ":7: berth.log_level: unknown key (did you mean berth.runtime.log_level?)",
		main + ":3: berth.root: \"relative/root\" is not an absolute path",
		main + ":7: berth.runtime.cgroup_manager: \"cgroupv3\" is not cgroupfs or systemd",
		// A handler table replaces the built-in handler of that name.
		dropIn + ":4: berth.runtime.runtimes.runc.runtime_path: must be set",
	}
	if len(le.Problems) != len(want) {
		t.Errorf("want %d problems, got %d:\n%v", len(want), len(le.Problems), err)
	}
	for i, w := range want {
		if i < len(le.Problems) && !strings.HasPrefix(le.Problems[i].String(), w) {
			t.Errorf("problem %d:\n got %s\nwant %s…", i, le.Problems[i], w)
		}
	}
	if !strings.HasPrefix(err.Error(), "invalid config, 8 problems:\n  ") {
		t.Errorf("message:\n%v", err)
	}
}

func TestLoadNamesTheFlagBehindABadValue(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	f := BindFlags(fs)
	dir := t.TempDir()
	if err := fs.Parse([]string{"--config", filepath.Join(dir, "none.toml"), "--log-level", "loud", "--metrics-port", "70000"}); err != nil {
		t.Fatal(err)
	}
	f.ConfigFile = ""
	_, err := f.Loader().Load()
	for _, w := range []string{"flag --log-level: berth.runtime.log_level: ", "flag --metrics-port: berth.metrics.metrics_port: 70000 is not a port"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error should contain %q: %v", w, err)
		}
	}
}

// TestFlagsHelpNamesKeyAndDefault: every flag's help says which key it
// overrides, shows that key's built-in default, and a given flag wins
// over the files (its origin says so).
func TestFlagsHelpNamesKeyAndDefault(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	f := BindFlags(fs)
	usage := fs.FlagUsages()
	for _, fk := range flagKeys {
		line := ""
		for _, l := range strings.Split(usage, "\n") {
			if strings.Contains(l, "--"+fk.name+" ") {
				line = l
			}
		}
		if !strings.Contains(line, "["+fk.key+"]") {
			t.Errorf("--%s help does not name %s: %q", fk.name, fk.key, line)
		}
	}
	for _, w := range []string{`--log-level string`, `[berth.runtime.log_level] (default "info")`, `(default 1m0s)`, `(default [/usr/lib/cni,/opt/cni/bin])`} {
		if !strings.Contains(usage, w) {
			t.Errorf("help lacks %q:\n%s", w, usage)
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "berth.toml")
	write(t, file, "[berth.runtime]\nlog_level = \"warn\"\n")
	if err := fs.Parse([]string{"--config", file, "--log-level", "error", "--pull-progress-timeout", "5s", "--plugin-dirs", "/a,/b", "--enable-metrics"}); err != nil {
		t.Fatal(err)
	}
	c, origins, err := f.Loader().LoadWithOrigins()
	if err != nil {
		t.Fatal(err)
	}
	b := c.Berth
	if b.Runtime.LogLevel != "error" || b.Image.PullProgressTimeout.Seconds() != 5 || !reflect.DeepEqual(b.Network.PluginDirs, []string{"/a", "/b"}) || !b.Metrics.Enable {
		t.Errorf("flags not applied: %+v", b)
	}
	if o := origins["berth.runtime.log_level"]; o.Flag != "--log-level" || o.Shadowed != "warn" {
		t.Errorf("log_level origin %+v", o)
	}
	if o := origins["berth.root"]; o != (Origin{}) {
		t.Errorf("root was set by nothing, origin %+v", o)
	}
}

func TestKeyLines(t *testing.T) {
	lines := keyLines(`top = 1
[berth . "runtime"]   # comment
log_level = "x = y"
'quoted.key' = 2
text = """
not = a key
"""
list = [
  "overlay.mountopt=nodev",
]
[[berth.arr]]
a.b = 3
`)
	want := map[string]int{"top": 1, "berth.runtime": 2, "berth.runtime.log_level": 3, `berth.runtime."quoted.key"`: 4,
		"berth.runtime.text": 5, "berth.runtime.list": 8, "berth.arr": 11, "berth.arr.a.b": 12}
	if !reflect.DeepEqual(lines, want) {
		t.Errorf("keyLines:\n got %v\nwant %v", lines, want)
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"log_levle", "log_level", 1}, {"", "ab", 2}, {"root", "runroot", 3}, {"same", "same", 0}, {"pids_limt", "pids_limit", 1}} {
		if got := editDistance(tc.a, tc.b); got != tc.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.d)
		}
	}
}

// TestJSONUsesTOMLKeyNames: the config berthd reports in its verbose
// status (berth info) is spelled as in the files.
func TestJSONUsesTOMLKeyNames(t *testing.T) {
	out, err := json.Marshal(Default())
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Berth struct {
			Root    string `json:"root"`
			Runtime struct {
				StopTimeout int64                     `json:"ctr_stop_timeout"`
				Runtimes    map[string]map[string]any `json:"runtimes"`
			} `json:"runtime"`
			Image struct {
				Progress string `json:"pull_progress_timeout"`
			} `json:"image"`
		} `json:"berth"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	b := doc.Berth
	if b.Root != "/var/lib/containers/storage" || b.Runtime.StopTimeout != 30 || b.Image.Progress != "1m0s" || b.Runtime.Runtimes["runc"]["runtime_path"] != "/usr/sbin/runc" {
		t.Errorf("JSON %s decoded as %+v", out, doc)
	}
	for _, goName := range []string{"StopTimeout", "Berth", "RuntimePath"} {
		if strings.Contains(string(out), fmt.Sprintf("%q", goName)) {
			t.Errorf("JSON carries the Go name %s: %s", goName, out)
		}
	}
}
