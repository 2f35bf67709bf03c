package store

import (
	"os"
	"path/filepath"
	"testing"
)

type rec struct {
	Version int    `json:"version"`
	Value   string `json:"value"`
}

func TestWriteKeepsPreviousCopy(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Create("a"); err != nil {
		t.Fatal(err)
	}
	if err := d.Write("a", "r.json", rec{1, "one"}); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteVolatile("a", "r.json", rec{1, "two"}); err != nil {
		t.Fatal(err)
	}
	var got rec
	if prev, err := d.ReadCheck("a", "r.json", &got); err != nil || prev || got.Value != "two" {
		t.Fatalf("read: %+v prev=%v err=%v", got, prev, err)
	}
	// A torn write (what a power loss after an unsynced write leaves).
	p := filepath.Join(d.Path("a"), "r.json")
	if err := os.WriteFile(p, []byte(`{"version":1,"val`), 0o600); err != nil {
		t.Fatal(err)
	}
	got = rec{}
	if prev, err := d.ReadCheck("a", "r.json", &got); err != nil || !prev || got.Value != "one" {
		t.Fatalf("torn read: %+v prev=%v err=%v", got, prev, err)
	}
	// Both copies torn: corrupt, not missing.
	if err := os.WriteFile(p+PrevSuffix, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.Read("a", "r.json", &got); !IsCorrupt(err) || IsNotExist(err) {
		t.Fatalf("both torn: %v", err)
	}
	// Missing file: not exist.
	if err := d.Read("a", "other.json", &got); !IsNotExist(err) {
		t.Fatalf("missing: %v", err)
	}
	// No temp files are left behind.
	ents, _ := os.ReadDir(d.Path("a"))
	for _, e := range ents {
		if e.Name() != "r.json" && e.Name() != "r.json"+PrevSuffix {
			t.Errorf("stray file %s", e.Name())
		}
	}
}
