package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultIsValidAndMissingDefaultFileIsFine(t *testing.T) {
	dir := t.TempDir()
	c, err := Loader{File: filepath.Join(dir, "none.toml"), DropInDir: filepath.Join(dir, "none.d")}.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Fatalf("loading nothing should give the defaults")
	}
	_, err = Loader{File: filepath.Join(dir, "none.toml"), FileRequired: true}.Load()
	if err == nil || !strings.Contains(err.Error(), "none.toml") {
		t.Fatalf("a named missing file must be an error naming it, got %v", err)
	}
}

func TestDropInsMergeInLexicalOrderAndFlagsWin(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "berth.toml")
	write(t, main, "[berth.runtime]\nlog_level = \"warn\"\nconmon = \"/opt/conmon\"\n[berth.image]\npinned_images = [\"a\"]\n")
	write(t, filepath.Join(dir, "d", "20-b.toml"), "[berth.image]\npinned_images = [\"b\"]\n")
	write(t, filepath.Join(dir, "d", "10-a.toml"), "[berth.image]\npinned_images = [\"z\"]\n[berth.runtime]\nlog_level = \"error\"\n")
	write(t, filepath.Join(dir, "d", "30-ignored.conf"), "this is not toml")
	write(t, filepath.Join(dir, "d", "40-runtime.toml"), "[berth.runtime.runtimes.other]\nruntime_path = \"/usr/bin/other\"\n")

	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	f := BindFlags(fs)
	if err := fs.Parse([]string{"--config", main, "--config-dir", filepath.Join(dir, "d"), "--log-level", "debug"}); err != nil {
		t.Fatal(err)
	}
	c, err := f.Loader().Load()
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Berth.Image.PinnedImages; !reflect.DeepEqual(got, []string{"b"}) {
		t.Errorf("pinned_images = %v, want the last drop-in's [b]", got)
	}
	if c.Berth.Runtime.LogLevel != "debug" {
		t.Errorf("log_level = %q, want the flag's debug", c.Berth.Runtime.LogLevel)
	}
	if c.Berth.Runtime.Conmon != "/opt/conmon" {
		t.Errorf("conmon = %q, want the main file's", c.Berth.Runtime.Conmon)
	}
	if _, ok := c.Berth.Runtime.Runtimes["runc"]; !ok {
		t.Errorf("a drop-in adding a handler must keep the default runc handler")
	}
	if _, ok := c.Berth.Runtime.Runtimes["other"]; !ok {
		t.Errorf("handler from drop-in missing")
	}
}

func TestRejectsUnknownKeysAndBadValuesNamingFileAndKey(t *testing.T) {
	cases := []struct {
		name, content, want string
	}{
		{"unknown key", "[berth.runtime]\nlog_levle = \"debug\"\n", "50-bad.toml:2: berth.runtime.log_levle: unknown key (did you mean berth.runtime.log_level?)"},
		{"unknown table", "[berth.nope]\nx = 1\n", "berth.nope"},
		{"bad level", "[berth.runtime]\nlog_level = \"loud\"\n", "berth.runtime.log_level"},
		{"bad type", "[berth.metrics]\nmetrics_port = \"x\"\n", "metrics_port"},
		{"bad duration", "[berth.image]\npull_progress_timeout = \"soon\"\n", "pull_progress_timeout"},
		{"relative path", "[berth]\nroot = \"var/lib\"\n", "berth.root"},
		{"bad handler", "[berth.runtime]\ndefault_runtime = \"kata\"\n", "berth.runtime.default_runtime"},
		{"bad driver", "[berth]\nstorage_driver = \"zfs\"\n", "berth.storage_driver"},
		{"bad shm", "[berth.runtime]\nshm_size = \"lots\"\n", "berth.runtime.shm_size"},
		{"relative nri socket", "[berth.nri]\nnri_listen = \"nri.sock\"\n", "berth.nri.nri_listen"},
		{"zero nri timeout", "[berth.nri]\nnri_plugin_request_timeout = \"0s\"\n", "berth.nri.nri_plugin_request_timeout"},
		{"misspelt nri key", "[berth.nri]\nenable_nrii = true\n", "did you mean berth.nri.enable_nri?"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "d", "50-bad.toml")
			write(t, file, tc.content)
			_, err := Loader{File: filepath.Join(dir, "berth.toml"), DropInDir: filepath.Join(dir, "d")}.Load()
			if err == nil {
				t.Fatal("want an error")
			}
			if !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q should name %s and %q", err, file, tc.want)
			}
		})
	}
}

func TestPrintedConfigRoundTrips(t *testing.T) {
	c := Default()
	c.Berth.Image.PinnedImages = []string{"registry.local/pause:*", "busybox:1"}
	c.Berth.Image.PullProgressTimeout = Duration{90 * time.Second}
	c.Berth.Runtime.Runtimes["alt"] = Handler{RuntimePath: "/usr/bin/alt", RuntimeRoot: "/run/alt", RuntimeType: "oci", AllowedAnnotations: []string{"io.berth.x"}}
	c.Berth.Metrics.Enable = true
	out, err := c.WriteTOML()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "# Path of the CRI gRPC unix socket.") {
		t.Errorf("printed config should carry comments:\n%s", out)
	}
	file := filepath.Join(t.TempDir(), "berth.toml")
	write(t, file, string(out))
	back, err := Loader{File: file, FileRequired: true}.Load()
	if err != nil {
		t.Fatalf("printed config does not load: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(back, c) {
		t.Fatalf("round trip changed the config:\n got %+v\nwant %+v", back, c)
	}
	again, err := back.WriteTOML()
	if err != nil || string(again) != string(out) {
		t.Fatalf("second print differs (err %v)", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"64m": 64 << 20, "1g": 1 << 30, "512k": 512 << 10, "65536": 65536, "64MB": 64 << 20} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "m", "-1m", "1.5g", "12q"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) should fail", bad)
		}
	}
}
