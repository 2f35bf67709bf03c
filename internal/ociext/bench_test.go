package ociext

import (
	"fmt"
	"path/filepath"
	"testing"
)

// BenchmarkApply measures what the extensions add to one container
// creation: with nothing configured, and with a mounts.conf of two
// lines, one CDI device and ten hooks that all match.
func BenchmarkApply(b *testing.B) {
	b.Run("none", func(b *testing.B) {
		f := newFixture(b)
		f.x.Report()
		benchApply(b, f, Request{})
	})
	b.Run("cdi+10hooks+2mounts", func(b *testing.B) {
		f := newFixture(b)
		write(b, filepath.Join(f.cdiDir, "null.yaml"), nullSpec)
		write(b, f.mountsFile, "/etc:/run/a\n/usr:/run/b\n")
		_, hooks := f.x.parts()
		for i := range 10 {
			write(b, filepath.Join(f.hookDir, fmt.Sprintf("%02d.json", i)), hookJSON("/tmp/x"))
		}
		hooks.reload()
		benchApply(b, f, Request{CDIDevices: []string{"berth.test/null=one"}})
	})
}

func benchApply(b *testing.B, f *fixture, req Request) {
	for b.Loop() {
		s := baseSpec()
		s.Annotations["io.berth.test/hook"] = "yes"
		if err := f.x.Apply(s, req); err != nil {
			b.Fatal(err)
		}
	}
}
