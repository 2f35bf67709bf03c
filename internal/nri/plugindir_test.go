package nri

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// A file in nri_plugin_dir not named IDX-NAME would make the adaptation
// refuse to start; it is left out of the directory the adaptation gets.
func TestPluginDirSkipsMalformedNames(t *testing.T) {
	dir, shadow := t.TempDir(), filepath.Join(t.TempDir(), "shadow")
	write := func(name string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("10-good", 0o755)
	write("README", 0o644) // not executable: the adaptation ignores it too
	log := slog.New(slog.DiscardHandler)

	got, err := pluginDir(dir, shadow, log)
	if err != nil || got != dir {
		t.Fatalf("with well-named plugins only: %q, %v; want %q", got, err, dir)
	}

	write("logger", 0o755)
	write("1-short-index", 0o755)
	got, err = pluginDir(dir, shadow, log)
	if err != nil || got != shadow {
		t.Fatalf("with malformed names: %q, %v; want %q", got, err, shadow)
	}
	ents, err := os.ReadDir(shadow)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"10-good"}) {
		t.Fatalf("shadow dir holds %v, want [10-good]", names)
	}
	if target, err := os.Readlink(filepath.Join(shadow, "10-good")); err != nil || target != filepath.Join(dir, "10-good") {
		t.Fatalf("10-good links to %q (%v)", target, err)
	}
}
