package checkpoint

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeCRIU writes a criu stand-in that records each run and behaves as
// script says.
func fakeCRIU(t *testing.T, script string) (path, runs string) {
	t.Helper()
	dir := t.TempDir()
	runs = filepath.Join(dir, "runs")
	path = filepath.Join(dir, "criu")
	body := "#!/bin/sh\necho \"$@\" >> " + runs + "\n" + script + "\n"
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, runs
}

func TestNotInstalled(t *testing.T) {
	p := NewProber(filepath.Join(t.TempDir(), "no-criu-here"))
	s := p.Support()
	if s.CRIU || s.CRIUPath != "" || !strings.Contains(s.Reason, "CRIU is not installed") {
		t.Fatalf("support = %+v", s)
	}
}

func TestCheckFailsIsReportedOnceWithCRIUsWords(t *testing.T) {
	path, runs := fakeCRIU(t, `echo "Error (criu/vdso.c:254): vdso: Failed to read vdso" >&2; exit 1`)
	p := NewProber(path)
	for range 3 {
		s := p.Support()
		if s.CRIU || s.CRIUPath != path || !strings.Contains(s.Reason, "Failed to read vdso") || !strings.Contains(s.Reason, "check` fails") {
			t.Fatalf("support = %+v", s)
		}
	}
	b, err := os.ReadFile(runs)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(b), "check"); got != 1 {
		t.Fatalf("criu check ran %d times, want once: %q", got, b)
	}
}

func TestCheckPasses(t *testing.T) {
	path, _ := fakeCRIU(t, `echo "Looks good."`)
	s := NewProber(path).Support()
	if !s.CRIU || !strings.Contains(s.Reason, "does not implement") {
		t.Fatalf("support = %+v", s)
	}
}
