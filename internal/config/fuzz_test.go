package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds the config loader arbitrary TOML. It must never panic;
// a refusal is a *LoadError naming each problem; an accepted file
// validates, and printing it back gives a file that loads to the same
// snapshot.
func FuzzLoad(f *testing.F) {
	f.Add("")
	f.Add("[berth]\nroot = \"/var/lib/containers/storage\"\n[berth.api]\nmax_metadata_size = 1024\n")
	f.Add("[berth.runtime]\nlog_level = \"debug\"\ndefault_sysctls = [\"net.ipv4.ping_group_range=0 0\"]\n[berth.runtime.runtimes.crun]\nruntime_path = \"/usr/bin/crun\"\nallowed_annotations = [\"io.berth.x\"]\n")
	f.Add("[berth.image]\npull_progress_timeout = \"-1s\"\nshort_name_mode = \"maybe\"\n[berth.stats]\nstats_collection_period = \"10x\"\n")
	f.Add("[berth]\nroot = 7\n[[berth.api]]\nlisten = \"relative\"\nbogus = 1\n")
	f.Add("[berth.image]\ndefault_transport = \"docker://\"\n")
	if b, err := Default().WriteTOML(); err == nil {
		f.Add(string(b))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data string) {
		path := filepath.Join(dir, "berth.toml")
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Loader{File: path, FileRequired: true}.Load()
		if err != nil {
			var le *LoadError
			if !errors.As(err, &le) || len(le.Problems) == 0 {
				t.Fatalf("refusal is not a LoadError with problems: %T %v", err, err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("loaded config does not validate: %v", err)
		}
		out, err := c.WriteTOML()
		if err != nil {
			t.Fatalf("print loaded config: %v", err)
		}
		if err := os.WriteFile(path, out, 0o644); err != nil {
			t.Fatal(err)
		}
		again, err := Loader{File: path, FileRequired: true}.Load()
		if err != nil {
			t.Fatalf("printed config does not load: %v\n%s", err, out)
		}
		out2, err := again.WriteTOML()
		if err != nil || string(out2) != string(out) {
			t.Fatalf("printed config changed on a second round: %v\n%s\n---\n%s", err, out, out2)
		}
	})
}
