package recovery

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMarkers(t *testing.T) {
	state, run := t.TempDir(), t.TempDir()
	s, err := Inspect(state, run)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Fresh || s.Rebooted || s.Unclean {
		t.Fatalf("first start: %+v", s)
	}
	if err := s.Done(); err != nil {
		t.Fatal(err)
	}
	// Killed: no clean marker.
	if s, _ = Inspect(state, run); s.Fresh || s.Rebooted || !s.Unclean {
		t.Fatalf("after a kill: %+v", s)
	}
	s.Done()
	if err := MarkClean(state); err != nil {
		t.Fatal(err)
	}
	if s, _ = Inspect(state, run); s.Fresh || s.Rebooted || s.Unclean {
		t.Fatalf("after a clean stop: %+v", s)
	}
	s.Done()
	// A reboot empties the run dir (tmpfs).
	MarkClean(state)
	os.Remove(filepath.Join(run, bootMarker))
	if s, _ = Inspect(state, run); !s.Rebooted || s.Unclean {
		t.Fatalf("after a reboot: %+v", s)
	}
	// Another boot id in the marker is a reboot too.
	os.WriteFile(filepath.Join(run, bootMarker), []byte("other\n"), 0o600)
	if s, _ = Inspect(state, run); !s.Rebooted {
		t.Fatalf("other boot id: %+v", s)
	}
}
