package stats

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"go.podman.io/storage"
	"go.podman.io/storage/types"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestDiskUsage(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a", "b", "f"), make([]byte, 100_000), 0o644); err != nil {
		t.Fatal(err)
	}
	// A hard link is one inode and its blocks count once.
	if err := os.Link(filepath.Join(dir, "a", "b", "f"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a", filepath.Join(dir, "sym")); err != nil {
		t.Fatal(err)
	}
	bytes, inodes, err := diskUsage(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	// dir, a, b, f (=link), sym
	if inodes != 5 {
		t.Errorf("inodes %d, want 5", inodes)
	}
	if bytes < 100_000 || bytes > 200_000 {
		t.Errorf("bytes %d, want about 100000 plus directories", bytes)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := diskUsage(ctx, "/usr"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled walk of /usr: %v", err)
	}
	if _, _, err := diskUsage(context.Background(), filepath.Join(dir, "missing")); err == nil {
		t.Error("missing dir measured")
	}
}

// TestStorageLayers measures a real containers/storage container's
// writable layer (vfs driver, in a temp dir).
func TestStorageLayers(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	st, err := storage.GetStore(types.StoreOptions{
		RunRoot:         filepath.Join(dir, "run"),
		GraphRoot:       filepath.Join(dir, "root"),
		GraphDriverName: "vfs",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Shutdown(true) })
	c, err := st.CreateContainer("", []string{"stats-test"}, "", "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	upper := layerDir(st.GraphRoot(), st.GraphDriverName(), c.LayerID)
	if err := os.WriteFile(filepath.Join(upper, "data"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	src := StorageLayers(func() (storage.Store, error) { return st, nil })
	u, err := src.LayerUsage(context.Background(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if u.Bytes < 1<<20 || u.Inodes < 2 || u.Mountpoint != st.GraphRoot() || u.Time.IsZero() {
		t.Fatalf("usage %+v", u)
	}
	if _, err := src.LayerUsage(context.Background(), "no-such-container"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("unknown container: %v", err)
	}
}
