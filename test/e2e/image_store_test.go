package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.podman.io/storage"
	"google.golang.org/grpc/codes"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/image"
	"github.com/berth-cri/berth/internal/testutil"
)

// Removing, pinning, and the offline import and export through the CLI.

func TestImagePinnedAndRemove(t *testing.T) {
	t.Parallel()
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	img := testutil.BusyboxImage(t, imgSpec)
	reg.Push(t, "app:a", img)
	reg.Push(t, "app:b", img)
	other := testutil.BusyboxImage(t, testutil.ImageSpec{Env: []string{"OTHER=1"}})
	reg.Push(t, "pinned/app:1", other)
	d := startImageDaemon(t, reg.RegistriesConf(), map[string]string{
		"40-pins.toml": fmt.Sprintf("[berth.image]\npinned_images = [%q]\n", reg.Host+"/pinned/*"),
	})
	id := mustPull(t, d, reg.Ref("app:a"))
	mustPull(t, d, reg.Ref("app:b"))
	pinnedID := mustPull(t, d, reg.Ref("pinned/app:1"))

	if !imageStatus(t, d, pinnedID, false).Image.Pinned || imageStatus(t, d, id, false).Image.Pinned {
		t.Error("pinned flags are wrong")
	}
	expectCode(t, removeImage(t, d, pinnedID), codes.FailedPrecondition, "pinned")
	expectCode(t, removeImage(t, d, reg.Ref("pinned/app:1")), codes.FailedPrecondition, "pinned")

	// Pins are reloadable.
	d.WriteDropIn(t, "40-pins.toml", fmt.Sprintf("[berth.image]\npinned_images = [%q]\n", reg.Ref("app:a")))
	reloadAndWait(t, d)
	if imageStatus(t, d, pinnedID, false).Image.Pinned || !imageStatus(t, d, id, false).Image.Pinned {
		t.Error("pinned flags did not follow the reload")
	}
	// Untagging the unpinned tag of a pinned image is fine; removing
	// the image is not.
	if err := removeImage(t, d, reg.Ref("app:b")); err != nil {
		t.Fatalf("untag: %v", err)
	}
	if tags := imageStatus(t, d, id, false).Image.RepoTags; len(tags) != 1 || tags[0] != reg.Ref("app:a") {
		t.Errorf("tags after untag = %v", tags)
	}
	expectCode(t, removeImage(t, d, id), codes.FailedPrecondition, "pinned")
	// The pause image is pinned too, as in CRI-O.
	d.WriteDropIn(t, "40-pins.toml", fmt.Sprintf("[berth.image]\npinned_images = []\npause_image = %q\n", reg.Ref("pinned/app:1")))
	reloadAndWait(t, d)
	if !imageStatus(t, d, pinnedID, false).Image.Pinned || imageStatus(t, d, id, false).Image.Pinned {
		t.Error("the pause image is not pinned")
	}
	expectCode(t, removeImage(t, d, pinnedID), codes.FailedPrecondition, "pause_image")
	d.WriteDropIn(t, "40-pins.toml", "[berth.image]\npinned_images = []\n")
	reloadAndWait(t, d)

	// An image a container uses is refused.
	ctrID := createStorageContainer(t, d, id)
	expectCode(t, removeImage(t, d, id), codes.FailedPrecondition, "in use", ctrID)
	deleteStorageContainer(t, d, ctrID)

	if err := removeImage(t, d, reg.Ref("app:a")); err != nil {
		t.Fatalf("remove the last tag: %v", err)
	}
	if st := imageStatus(t, d, id, false); st.Image != nil {
		t.Errorf("image still there: %v", st.Image)
	}
	if err := removeImage(t, d, id); err != nil {
		t.Errorf("removing a removed image must succeed: %v", err)
	}
	// By repo digest.
	digests := imageStatus(t, d, pinnedID, false).Image.RepoDigests
	if err := removeImage(t, d, digests[0]); err != nil {
		t.Fatalf("remove by digest: %v", err)
	}
	assertClean(t, d, 0)
}

// openDaemonStore opens the daemon's containers/storage from the test
// process, as a second user of the store would (the containers engineer's
// code, podman); storage locks across processes.
func openDaemonStore(t *testing.T, d *testutil.Daemon) storage.Store {
	t.Helper()
	cfg, err := config.Loader{File: d.ConfigFile, DropInDir: d.DropInDir}.Load()
	if err != nil {
		t.Fatal(err)
	}
	opts, err := image.StoreOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	store, err := storage.GetStore(opts)
	if err != nil {
		t.Fatal(err)
	}
	return store
}

func createStorageContainer(t *testing.T, d *testutil.Daemon, imageID string) string {
	t.Helper()
	store := openDaemonStore(t, d)
	defer store.Shutdown(false)
	c, err := store.CreateContainer("", nil, imageID, "", "", nil)
	if err != nil {
		t.Fatalf("create storage container: %v", err)
	}
	return c.ID
}

func deleteStorageContainer(t *testing.T, d *testutil.Daemon, id string) {
	t.Helper()
	store := openDaemonStore(t, d)
	defer store.Shutdown(false)
	if err := store.DeleteContainer(id); err != nil {
		t.Fatalf("delete storage container: %v", err)
	}
}

func TestImageImportExportCLI(t *testing.T) {
	t.Parallel()
	img := testutil.BusyboxImage(t, imgSpec)
	dir := t.TempDir()
	dockerTar := filepath.Join(dir, "docker.tar")
	testutil.SaveDockerArchive(t, img, dockerTar, "busybox:saved")
	ociTar := filepath.Join(dir, "oci.tar")
	testutil.SaveOCIArchive(t, img, ociTar, "latest")
	layout := filepath.Join(dir, "layout")
	testutil.SaveOCILayout(t, img, layout, "")
	d := startImageDaemon(t, "", nil)
	cli := func(args ...string) (string, error) {
		return d.CLI(t, append([]string{"--config", d.ConfigFile}, args...)...)
	}

	for _, c := range []struct{ file, name, want string }{
		{dockerTar, "", "docker.io/library/busybox:saved"},
		{ociTar, "demo:oci", "localhost/demo:oci"},
		{layout, "quay.io/team/demo:layout", "quay.io/team/demo:layout"},
	} {
		args := []string{"image", "import", c.file}
		if c.name != "" {
			args = append(args, "--name", c.name)
		}
		out, err := cli(args...)
		if err != nil {
			t.Fatalf("import %s: %v", c.file, err)
		}
		if !strings.Contains(out, c.want) {
			t.Errorf("import output %q does not name %s", out, c.want)
		}
		// berthd sees what the CLI wrote to storage.
		if st := imageStatus(t, d, c.want, false); st.Image == nil {
			t.Errorf("berthd does not see the imported %s", c.want)
		}
	}
	if st := imageStatus(t, d, "demo:oci", false); st.Image == nil {
		t.Error("the short name of an imported image does not resolve")
	}
	if got := listImages(t, d, ""); len(got) != 1 || len(got[0].RepoTags) != 3 {
		t.Errorf("list after three imports of one image = %v", got)
	}

	out := filepath.Join(dir, "export.tar")
	if _, err := cli("image", "export", "demo:oci", out); err != nil {
		t.Fatalf("export: %v", err)
	}
	if _, err := cli("image", "export", "demo:oci", out); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("export over an existing file: %v", err)
	}
	id := imageStatus(t, d, "demo:oci", false).Image.Id
	for _, tag := range []string{"docker.io/library/busybox:saved", "localhost/demo:oci", "quay.io/team/demo:layout"} {
		if err := removeImage(t, d, tag); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli("image", "import", out); err != nil {
		t.Fatalf("re-import the export: %v", err)
	}
	if st := imageStatus(t, d, "localhost/demo:oci", false); st.Image.GetId() != id {
		t.Errorf("re-imported image = %v, want id %s", st.Image, id)
	}

	// Bad archives fail clearly and leave nothing.
	_, err := cli("image", "import", filepath.Join(dir, "missing.tar"), "--name", "x:1")
	if err == nil || !strings.Contains(err.Error(), "missing.tar") {
		t.Errorf("import of a missing file: %v", err)
	}
	junk := filepath.Join(dir, "junk.tar")
	os.WriteFile(junk, []byte(strings.Repeat("not a tar ", 200)), 0o644)
	if _, err := cli("image", "import", junk, "--name", "x:1"); err == nil || !strings.Contains(err.Error(), "junk.tar") {
		t.Errorf("import of junk: %v", err)
	}
	for _, kind := range []string{testutil.EvilDotDot, testutil.EvilAbsSymlink} {
		evil := filepath.Join(dir, kind+".tar")
		victim := testutil.EvilTarball(t, evil, kind)
		_, err := cli("image", "import", evil)
		t.Logf("import %s: %v", kind, err)
		if _, serr := os.Lstat(victim); serr == nil {
			t.Fatalf("importing %s wrote %s outside the rootfs", kind, victim)
		}
		if err != nil && !strings.Contains(err.Error(), evil) {
			t.Errorf("import %s: error does not name the archive: %v", kind, err)
		}
		if err == nil {
			// Contained inside the layer: acceptable, but then gone again.
			if err := removeImage(t, d, "evil:"+kind); err != nil {
				t.Fatal(err)
			}
		}
	}
	assertClean(t, d, 1)
	stillServing(t, d)
}
