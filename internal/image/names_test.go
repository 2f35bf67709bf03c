package image

import (
	"errors"
	"slices"
	"testing"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/testutil"
)

// One image stored under two repositories is named by the repository it
// was asked for: a container created from the second name reports that
// repository's digest, also when the kubelet gives the ID and the name
// only as user_specified_image.
func TestResolveNamedReportsTheRequestedRepository(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	img := testutil.BusyboxImage(t, testutil.ImageSpec{})
	digest := reg.Push(t, "own/busybox:2", img).String()
	reg.Push(t, "other/busybox:1", img)
	e := newEnv(t, reg.RegistriesConf(), nil)
	ctx := ctxT(t)
	own, other := reg.Ref("own/busybox:2"), reg.Ref("other/busybox:1")
	ownDigest, otherDigest := reg.Host+"/own/busybox@"+digest, reg.Host+"/other/busybox@"+digest
	id, err := e.svc.Pull(ctx, own, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Pull(ctx, other, nil); err != nil {
		t.Fatal(err)
	}
	// storage lists the latest name first: the other repository is the
	// one a container must not report when created from the own name.
	info, err := e.svc.Resolve(ctx, id)
	if err != nil || info.RepoTags[0] != other || info.RepoDigests[0] != otherDigest {
		t.Fatalf("the test needs %s listed first: %+v, %v", other, info, err)
	}
	for _, tc := range []struct {
		image, user, wantTag, wantDigest string
	}{
		{own, "", own, ownDigest},
		{other, "", other, otherDigest},
		{ownDigest, "", other, ownDigest},
		{id, own, own, ownDigest},
		{id[:12], own, own, ownDigest},
		// A user name of another image, or none: the first names.
		{id, reg.Ref("own/busybox:nope"), other, otherDigest},
		{id, "", other, otherDigest},
	} {
		info, err := e.svc.ResolveNamed(ctx, tc.image, tc.user)
		if err != nil {
			t.Fatalf("ResolveNamed(%q, %q): %v", tc.image, tc.user, err)
		}
		if info.ID != id || info.Tag != tc.wantTag || info.RepoDigest != tc.wantDigest {
			t.Errorf("ResolveNamed(%q, %q): id %s, tag %q, repo digest %q; want %q, %q", tc.image, tc.user, info.ID, info.Tag, info.RepoDigest, tc.wantTag, tc.wantDigest)
		}
	}
	if _, err := e.svc.ResolveNamed(ctx, reg.Ref("own/busybox:nope"), ""); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("ResolveNamed of a missing name: %v, want NotFound", err)
	}
}

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
