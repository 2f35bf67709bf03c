package testutil

import (
	"os/exec"
	"strings"
	"testing"
)

// TestBuildCrictl: the builder yields a crictl that runs and reports the
// pinned version, and a second call finds the cached binary.
func TestBuildCrictl(t *testing.T) {
	bin := BuildCrictl(t)
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), strings.TrimPrefix(CrictlVersion, "v")) {
		t.Fatalf("crictl --version: %q, %v", out, err)
	}
	if again := BuildCrictl(t); again != bin {
		t.Fatalf("second build gave %s, first %s", again, bin)
	}
}
