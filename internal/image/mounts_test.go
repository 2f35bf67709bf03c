package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.podman.io/storage"

	"github.com/berth-cri/berth/internal/errdefs"
)

// fakeMounter counts storage's image mounts the way storage does.
type fakeMounter struct {
	count     map[string]int
	mounts    int // MountImage calls
	unmounts  int // UnmountImage calls
	failMount error
}

func (f *fakeMounter) MountImage(id string, _ []string, _ string) (string, error) {
	if f.failMount != nil {
		return "", f.failMount
	}
	f.mounts++
	f.count[id]++
	return "/mnt/" + id, nil
}

func (f *fakeMounter) UnmountImage(id string, force bool) (bool, error) {
	f.unmounts++
	if force {
		f.count[id] = 0
	} else if f.count[id] > 0 {
		f.count[id]--
	}
	return f.count[id] > 0, nil
}

func newFakeMounter() *fakeMounter { return &fakeMounter{count: map[string]int{}} }

func (f *fakeMounter) get() (imageMounter, error) { return f, nil }

func TestImageMountsShareOneMount(t *testing.T) {
	f := newFakeMounter()
	var im imageMounts
	for _, holder := range []string{"c1", "c2", "c2"} {
		p, err := im.acquire(f, "img", holder)
		if err != nil || p != "/mnt/img" {
			t.Fatalf("acquire for %s = %q, %v", holder, p, err)
		}
	}
	if f.mounts != 1 {
		t.Fatalf("storage mounted the image %d times, want once", f.mounts)
	}
	if got := im.holders("img"); !slices.Equal(got, []string{"c1", "c2"}) {
		t.Fatalf("holders = %v", got)
	}
	if err := im.release(f.get, "c1"); err != nil {
		t.Fatal(err)
	}
	if f.unmounts != 0 || f.count["img"] != 1 {
		t.Fatalf("released by one of two holders: unmounts %d, count %d", f.unmounts, f.count["img"])
	}
	// Releasing twice, or by a stranger, changes nothing.
	if err := im.release(f.get, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := im.release(f.get, "stranger"); err != nil {
		t.Fatal(err)
	}
	if err := im.release(f.get, "c2"); err != nil {
		t.Fatal(err)
	}
	if f.unmounts != 1 || f.count["img"] != 0 || im.holders("img") != nil {
		t.Fatalf("after the last holder: unmounts %d, count %d, holders %v", f.unmounts, f.count["img"], im.holders("img"))
	}
}

func TestImageMountsDeletionRefusedWhileHeld(t *testing.T) {
	f := newFakeMounter()
	var im imageMounts
	if _, err := im.acquire(f, "img", "c1"); err != nil {
		t.Fatal(err)
	}
	deleted := false
	err := im.whileUnused("img", func() error { deleted = true; return nil })
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || deleted {
		t.Fatalf("deletion of a held image: err %v, deleted %v", err, deleted)
	}
	if err := im.release(f.get, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := im.whileUnused("img", func() error { deleted = true; return nil }); err != nil || !deleted {
		t.Fatalf("deletion of a released image: err %v, deleted %v", err, deleted)
	}
}

// After a restart the holders come from the records; storage still
// counts the previous daemon's mount. A new holder mounts again (storage
// counts two) and the last release still leaves nothing mounted.
func TestImageMountsAdoptedAfterRestart(t *testing.T) {
	f := newFakeMounter()
	f.count["img"] = 1 // the previous daemon's mount
	var im imageMounts
	im.adopt("img", "old")
	if f.mounts != 0 {
		t.Fatal("adopt touched storage")
	}
	if err := im.whileUnused("img", func() error { return nil }); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("deletion of an adopted image: %v", err)
	}
	if _, err := im.acquire(f, "img", "new"); err != nil {
		t.Fatal(err)
	}
	if err := im.release(f.get, "old"); err != nil {
		t.Fatal(err)
	}
	if f.unmounts != 0 {
		t.Fatal("unmounted while a holder remains")
	}
	if err := im.release(f.get, "new"); err != nil {
		t.Fatal(err)
	}
	if f.count["img"] != 0 {
		t.Fatalf("storage still counts %d mounts of the image", f.count["img"])
	}
}

// An adopted image whose only holder goes is unmounted without this
// daemon having mounted it.
func TestImageMountsAdoptedReleased(t *testing.T) {
	f := newFakeMounter()
	f.count["img"] = 1
	var im imageMounts
	im.adopt("img", "old")
	if err := im.release(f.get, "old"); err != nil {
		t.Fatal(err)
	}
	if f.unmounts != 1 || f.count["img"] != 0 {
		t.Fatalf("unmounts %d, count %d", f.unmounts, f.count["img"])
	}
}

func TestImageMountsFailedMountTakesNothing(t *testing.T) {
	f := newFakeMounter()
	f.failMount = fmt.Errorf("locating image: %w", storage.ErrImageUnknown)
	var im imageMounts
	if _, err := im.acquire(f, "img", "c1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("mount of a vanished image: %v, want not found", err)
	}
	if im.holders("img") != nil {
		t.Fatal("a failed mount left a holder")
	}
	if err := im.whileUnused("img", func() error { return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestSubPath(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"data/deep", "usr/share"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"rel":     "data/deep",   // inside
		"abs":     "/usr/share",  // absolute: from the image's root
		"data/up": "../usr",      // climbs, but stays inside
		"escape":  "../../etc",   // climbs above the root
		"loop":    "loop",        // never ends
		"dangle":  "data/absent", // nothing there
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	for sub, want := range map[string]string{
		"data":          "data",
		"data/deep/":    "data/deep",
		"rel":           "data/deep",
		"abs":           "usr/share",
		"data/up/share": "usr/share",
		"./data/./deep": "data/deep",
	} {
		got, err := SubPath(root, sub)
		if err != nil || got != filepath.Join(root, want) {
			t.Errorf("SubPath(%q) = %q, %v; want %s", sub, got, err, want)
		}
	}
	for sub, kind := range map[string]error{
		"missing":      errdefs.ErrNotFound,
		"dangle":       errdefs.ErrNotFound,
		"data/deep/no": errdefs.ErrNotFound,
		"escape":       errdefs.ErrInvalidArgument,
		"escape/x":     errdefs.ErrInvalidArgument,
		"loop":         errdefs.ErrInvalidArgument,
	} {
		if _, err := SubPath(root, sub); !errors.Is(err, kind) {
			t.Errorf("SubPath(%q) = %v, want %v", sub, err, kind)
		}
	}
}
