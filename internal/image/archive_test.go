package image

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/testutil"
)

func TestImageImportExport(t *testing.T) {
	img := testutil.BusyboxImage(t, testutil.ImageSpec{User: "app"})
	e := newEnv(t, "", nil)
	ctx := ctxT(t)
	dir := t.TempDir()
	docker := filepath.Join(dir, "docker.tar")
	testutil.SaveDockerArchive(t, img, docker, "busybox:saved")
	ociArchive := filepath.Join(dir, "oci.tar")
	testutil.SaveOCIArchive(t, img, ociArchive, "latest")
	layout := filepath.Join(dir, "layout")
	testutil.SaveOCILayout(t, img, layout, "quay.io/x/busybox:9")

	info, err := e.svc.Import(ctx, docker, "")
	if err != nil {
		t.Fatalf("import docker-archive: %v", err)
	}
	if got := info.RepoTags; len(got) != 1 || got[0] != "docker.io/library/busybox:saved" || info.Username != "app" {
		t.Errorf("docker-archive import: %+v", info)
	}
	if _, err := e.svc.Import(ctx, ociArchive, ""); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("oci-archive without a usable name: %v, want InvalidArgument", err)
	}
	if info, err := e.svc.Import(ctx, ociArchive, "mine:1"); err != nil || info.RepoTags[0] != "localhost/mine:1" {
		t.Errorf("import oci-archive: %+v, %v", info, err)
	}
	if info, err := e.svc.Import(ctx, layout, ""); err != nil || !slices.Contains(info.RepoTags, "quay.io/x/busybox:9") {
		t.Errorf("import oci layout: %+v, %v", info, err)
	}
	// Short names find localhost/ images.
	if _, err := e.svc.Resolve(ctx, "mine:1"); err != nil {
		t.Errorf("resolve short name of an imported image: %v", err)
	}
	if _, err := e.svc.Import(ctx, filepath.Join(dir, "missing.tar"), "x"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("import of a missing file: %v", err)
	}
	junk := filepath.Join(dir, "junk.tar")
	writeFile(t, junk, strings.Repeat("junk", 1000))
	if _, err := e.svc.Import(ctx, junk, "x"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("import of junk: %v", err)
	}

	out := filepath.Join(dir, "out.tar")
	if err := e.svc.Export(ctx, "mine:1", out); err != nil {
		t.Fatalf("export: %v", err)
	}
	if err := e.svc.Export(ctx, "mine:1", out); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("export over a file: %v", err)
	}
	if err := e.svc.Remove(ctx, info.ID); err != nil {
		t.Fatal(err)
	}
	back, err := e.svc.Import(ctx, out, "")
	if err != nil || back.ID != info.ID || back.RepoTags[0] != "localhost/mine:1" {
		t.Errorf("re-import of the export: %+v, %v", back, err)
	}
	left, _ := os.ReadDir(dir)
	for _, f := range left {
		if strings.HasPrefix(f.Name(), ".berth-export") {
			t.Errorf("export left %s", f.Name())
		}
	}
}

func TestImageImportEvil(t *testing.T) {
	for _, driver := range []string{"overlay", "vfs"} {
		for _, kind := range []string{testutil.EvilDotDot, testutil.EvilAbsSymlink} {
			t.Run(driver+"/"+kind, func(t *testing.T) {
				e := newEnv(t, "", func(c *config.Config) { c.Berth.StorageDriver = driver })
				tarball := filepath.Join(t.TempDir(), "evil.tar")
				victim := testutil.EvilTarball(t, tarball, kind)
				info, err := e.svc.Import(ctxT(t), tarball, "")
				t.Logf("import: %v", err)
				if _, serr := os.Lstat(victim); serr == nil {
					t.Fatalf("%s escaped the rootfs: %s exists", kind, victim)
				}
				if err == nil {
					// Contained: the entry must be inside the layer.
					store, _ := e.svc.Store()
					mnt, merr := store.MountImage(info.ID, nil, "")
					if merr != nil {
						t.Fatal(merr)
					}
					defer store.UnmountImage(info.ID, true)
					t.Logf("contained; rootfs %s", mnt)
					return
				}
				if !strings.Contains(err.Error(), tarball) {
					t.Errorf("error does not name the tarball")
				}
				e.assertNoLeftovers(t, 0)
			})
		}
	}
}

func TestStoreOptions(t *testing.T) {
	cfg := config.Default()
	opts, err := StoreOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if opts.GraphDriverName != "" || !slices.Equal(opts.GraphDriverPriority, []string{"overlay", "vfs"}) || opts.GraphRoot != cfg.Berth.Root {
		t.Errorf("default options = %+v, want overlay then vfs at %s", opts, cfg.Berth.Root)
	}

	// storage.conf is the base; berth's keys win.
	conf := filepath.Join(t.TempDir(), "storage.conf")
	writeFile(t, conf, "[storage]\ndriver = \"vfs\"\ngraphroot = \"/elsewhere\"\n[storage.options.overlay]\nmountopt = \"nodev\"\n")
	cfg.Berth.StorageConf = conf
	if opts, err = StoreOptions(cfg); err != nil {
		t.Fatal(err)
	}
	if opts.GraphDriverName != "vfs" || opts.GraphRoot != cfg.Berth.Root || len(opts.GraphDriverPriority) != 0 {
		t.Errorf("options from storage.conf = %+v", opts)
	}
	cfg.Berth.StorageDriver = "overlay"
	cfg.Berth.StorageOptions = []string{"overlay.mountopt=nodev,metacopy=on"}
	if opts, err = StoreOptions(cfg); err != nil {
		t.Fatal(err)
	}
	if opts.GraphDriverName != "overlay" || opts.GraphDriverOptions[len(opts.GraphDriverOptions)-1] != "overlay.mountopt=nodev,metacopy=on" {
		t.Errorf("berth keys over storage.conf = %+v", opts)
	}
	cfg.Berth.StorageConf = filepath.Join(t.TempDir(), "missing.conf")
	if _, err := StoreOptions(cfg); err == nil {
		t.Error("a missing storage.conf is accepted")
	}
}

// TestStoreFallsBackToVFS puts the storage root on an overlay mount,
// where the kernel refuses another overlay, and expects vfs.
func TestStoreFallsBackToVFS(t *testing.T) {
	e := newEnv(t, "", nil)
	base := filepath.Join(e.dir, "ovl")
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/work", base, base, base)
	if out, err := exec.Command("mount", "-t", "overlay", "overlay", "-o", opts, filepath.Join(base, "merged")).CombinedOutput(); err != nil {
		t.Skipf("mount overlay: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if err := e.svc.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		exec.Command("umount", "-l", filepath.Join(base, "merged")).Run()
	})
	e.cfg.Berth.Root = filepath.Join(base, "merged", "storage")
	store, err := e.svc.Store()
	if err != nil {
		t.Fatalf("open storage on overlay: %v", err)
	}
	if store.GraphDriverName() != "vfs" {
		t.Errorf("driver on an overlay root = %s, want the vfs fallback", store.GraphDriverName())
	}
	tarball := filepath.Join(t.TempDir(), "img.tar")
	testutil.SaveDockerArchive(t, testutil.BusyboxImage(t, testutil.ImageSpec{}), tarball, "busybox:1")
	if _, err := e.svc.Import(ctxT(t), tarball, ""); err != nil {
		t.Fatalf("import on the fallback driver: %v", err)
	}
}
