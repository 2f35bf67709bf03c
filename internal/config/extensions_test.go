package config

import (
	"slices"
	"testing"
)

func TestExtensionPathsMustBeAbsolute(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	c.Berth.Runtime.CDISpecDirs = []string{"/etc/cdi", "cdi"}
	c.Berth.Runtime.HooksDirs = []string{"hooks.d"}
	c.Berth.Runtime.DefaultMountsFile = "mounts.conf"
	var keys []string
	for _, fe := range FieldErrors(c.Validate()) {
		keys = append(keys, fe.Key)
	}
	want := []string{"berth.runtime.cdi_spec_dirs", "berth.runtime.hooks_dir", "berth.runtime.default_mounts_file"}
	if !slices.Equal(keys, want) {
		t.Errorf("bad keys %v, want %v", keys, want)
	}
	// Empty means none: no CDI dirs, no hooks, no default mounts.
	c.Berth.Runtime.CDISpecDirs, c.Berth.Runtime.HooksDirs, c.Berth.Runtime.DefaultMountsFile = nil, nil, ""
	if err := c.Validate(); err != nil {
		t.Errorf("empty extension keys: %v", err)
	}
}
