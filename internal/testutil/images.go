// Package testutil holds the fixtures shared by berth's integration tests:
//
//   - images.go, archives.go: small OCI images built offline from the
//     host's busybox-static, saved as docker-archive, oci-archive or OCI
//     layout, plus malicious images for negative tests;
//   - registry.go, faults.go: an in-process registry on 127.0.0.1 with
//     optional TLS and basic auth, and fault injectors;
//   - build.go, daemon.go, daemonfiles.go, cleanup.go: a harness that
//     builds and runs the real berthd and talks CRI to it over its socket.
//
// Every helper takes a testing.TB, fails the test on error and registers
// its own cleanup, so tests read as a list of steps:
//
//	img := testutil.BusyboxImage(t, testutil.ImageSpec{Cmd: []string{"sleep", "1000"}})
//	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
//	reg.Push(t, "busybox:test", img)
//	d := testutil.NewDaemon(t, testutil.DaemonOptions{BinDir: binDir})
//	d.WriteRegistriesConf(t, reg.RegistriesConf())
//	d.Start(t)
//	_, err := d.Images.PullImage(ctx, &runtimeapi.PullImageRequest{
//		Image: &runtimeapi.ImageSpec{Image: reg.Ref("busybox:test")}})
package testutil

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-cri/berth/internal/imagebuild"
)

// ImageSpec describes a test image; see imagebuild.Spec.
type ImageSpec = imagebuild.Spec

// Re-exported so tests read testutil.X for everything they use.
const (
	HostBusybox = imagebuild.HostBusybox
	DefaultPath = imagebuild.DefaultPath
	Applets     = imagebuild.Applets
)

// BusyboxImage builds a small single-platform OCI image from the host's
// busybox-static. The output is deterministic: equal specs give equal
// digests.
func BusyboxImage(t testing.TB, spec ImageSpec) v1.Image {
	t.Helper()
	img, err := imagebuild.Busybox(spec)
	if err != nil {
		t.Fatalf("build busybox image: %v", err)
	}
	return img
}
