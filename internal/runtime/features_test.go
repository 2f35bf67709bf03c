package runtime

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// A runtime advertises rro only with "rro" in its mount options and a
// kernel of 5.12 or later; the answer is asked for once per runtime.
func TestFeatureProbe(t *testing.T) {
	dir := t.TempDir()
	counter := filepath.Join(dir, "calls")
	fake := func(name, doc string) OCI {
		p := filepath.Join(dir, name)
		script := "#!/bin/sh\necho x >> " + counter + "\n[ \"$1\" = features ] || exit 1\necho '" + doc + "'\n"
		if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		return OCI{Path: p}
	}
	withRRO := fake("with", `{"mountOptions":["ro","rbind","rro"]}`)
	without := fake("without", `{"mountOptions":["ro","rbind"]}`)
	old := OCI{Path: filepath.Join(dir, "missing")}
	for _, tc := range []struct {
		kernel string
		r      OCI
		want   bool
	}{
		{"6.1.0-18-amd64", withRRO, true},
		{"5.12.0", withRRO, true},
		{"5.11.22", withRRO, false},
		{"garbage", withRRO, false},
		{"6.1.0", without, false},
		{"6.1.0", old, false},
	} {
		p := NewFeatureProbe()
		p.kernel = func() (string, error) { return tc.kernel, nil }
		if got := p.Of(context.Background(), tc.r).RecursiveReadOnly; got != tc.want {
			t.Errorf("kernel %s, runtime %s: rro %v, want %v", tc.kernel, filepath.Base(tc.r.Path), got, tc.want)
		}
	}
	os.Remove(counter)
	p := NewFeatureProbe()
	p.kernel = func() (string, error) { return "6.1.0", nil }
	for range 3 {
		p.Of(context.Background(), withRRO)
	}
	if data, _ := os.ReadFile(counter); string(data) != "x\n" {
		t.Fatalf("runtime asked %q times, want once", data)
	}
}

// user_namespaces follows the host probe, which runs once per runtime.
func TestFeatureProbeUserNamespaces(t *testing.T) {
	r := OCI{Path: filepath.Join(t.TempDir(), "missing")}
	for _, tc := range []struct {
		probe error
		want  bool
	}{{nil, true}, {os.ErrPermission, false}} {
		calls := 0
		p := NewFeatureProbe()
		p.userns = func() error { calls++; return tc.probe }
		for range 3 {
			if got := p.Of(context.Background(), r).UserNamespaces; got != tc.want {
				t.Errorf("probe %v: user namespaces %v, want %v", tc.probe, got, tc.want)
			}
		}
		if calls != 1 {
			t.Errorf("probe %v: host probed %d times, want once", tc.probe, calls)
		}
	}
}
