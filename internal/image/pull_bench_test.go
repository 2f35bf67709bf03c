package image

import (
	"testing"

	"github.com/berth-cri/berth/internal/imagebuild"
	"github.com/berth-cri/berth/internal/testutil"
)

// BenchmarkPull pulls images from a registry on 127.0.0.1 into private
// storage and removes them again, one pull per iteration: where a pull's
// time goes (go test -bench Pull -cpuprofile …) without a daemon.
// hack/benchcompare compares whole daemons.
func BenchmarkPull(b *testing.B) {
	reg := testutil.StartRegistry(b, testutil.RegistryOptions{})
	for _, c := range []struct {
		name         string
		layers, size int
	}{{"small", 0, 0}, {"50mb-5-layers", 4, 12 << 20}} {
		img, err := imagebuild.Random(1, c.layers, c.size)
		if err != nil {
			b.Fatal(err)
		}
		reg.Push(b, "bench/"+c.name+":1", img)
		b.Run(c.name, func(b *testing.B) {
			e := newEnv(b, reg.RegistriesConf(), nil)
			ctx := ctxT(b)
			ref := reg.Ref("bench/" + c.name + ":1")
			for b.Loop() {
				id, err := e.svc.Pull(ctx, ref, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := e.svc.Remove(ctx, id); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
