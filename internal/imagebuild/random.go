package imagebuild

import (
	"archive/tar"
	"fmt"
	"math/rand/v2"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Random is busybox plus extra layers of size bytes of incompressible
// data each, the same for the same seed: the benchmarks pull it to
// measure transfer and unpacking rather than busybox.
func Random(seed uint64, extra, size int) (v1.Image, error) {
	base, err := Busybox(Spec{})
	if err != nil {
		return nil, err
	}
	layers, err := base.Layers()
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range extra {
		body := make([]byte, size)
		for j := 0; j+8 <= len(body); j += 8 {
			v := rng.Uint64()
			for k := range 8 {
				body[j+k] = byte(v >> (8 * k))
			}
		}
		l, err := RawLayer([]RawEntry{{
			Header: &tar.Header{Name: fmt.Sprintf("data/%d", i), Mode: 0o644, Size: int64(size), Typeflag: tar.TypeReg, ModTime: Epoch()},
			Body:   body,
		}})
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
	}
	return Assemble(layers, v1.Config{Cmd: []string{"/bin/sh"}, Env: []string{DefaultPath}})
}
