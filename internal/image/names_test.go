package image

import (
	"errors"
	"slices"
	"testing"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/testutil"
)

// A tag is only untagged while the image keeps another name, a repo@digest
// name it was pulled by included, as CRI-O does; the last name goes with
// the image.
func TestRemoveTagKeepsTheDigestName(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	digest := reg.Push(t, "lib/busybox:a", testutil.BusyboxImage(t, testutil.ImageSpec{})).String()
	e := newEnv(t, reg.RegistriesConf(), nil)
	ctx := ctxT(t)
	byDigest := reg.Host + "/lib/busybox@" + digest
	id, err := e.svc.Pull(ctx, byDigest, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Pull(ctx, reg.Ref("lib/busybox:a"), nil); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Remove(ctx, reg.Ref("lib/busybox:a")); err != nil {
		t.Fatalf("untag: %v", err)
	}
	info, err := e.svc.Resolve(ctx, byDigest)
	if err != nil || info.ID != id || len(info.RepoTags) != 0 || !slices.Contains(info.RepoDigests, byDigest) {
		t.Fatalf("after untagging: %+v, %v", info, err)
	}
	if err := e.svc.Remove(ctx, byDigest); err != nil {
		t.Fatalf("remove by digest: %v", err)
	}
	if _, err := e.svc.Resolve(ctx, id); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("after removing the last name: %v", err)
	}
}
