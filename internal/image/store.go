package image

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"go.podman.io/storage"
	"go.podman.io/storage/types"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
)

// StoreOptions returns the containers/storage options berth's config
// describes: storage.conf (when storage_conf is set) as the base, then
// berth's root, runroot, driver and driver options on top. With no driver
// named anywhere, overlay is preferred and vfs is the fallback, which
// containers/storage implements through its driver priority list.
func StoreOptions(cfg *config.Config) (types.StoreOptions, error) {
	b := cfg.Berth
	var opts types.StoreOptions
	if b.StorageConf != "" {
		// go.podman.io/storage takes a named storage.conf only through
		// this variable, and then silently skips a missing file; a
		// storage.conf named in berth's config must exist. Its drop-ins
		// (storage.conf.d) apply on top, as in podman and CRI-O.
		if _, err := os.Stat(b.StorageConf); err != nil {
			return opts, fmt.Errorf("storage.conf %s: %w", b.StorageConf, err)
		}
		if err := os.Setenv("CONTAINERS_STORAGE_CONF", b.StorageConf); err != nil {
			return opts, fmt.Errorf("name storage.conf %s: %w", b.StorageConf, err)
		}
		loaded, err := types.LoadStoreOptions(types.LoadOptions{})
		if err != nil {
			return opts, fmt.Errorf("read storage.conf %s: %w", b.StorageConf, err)
		}
		opts = loaded
	}
	opts.GraphRoot, opts.RunRoot = b.Root, b.RunRoot
	if b.StorageDriver != "" {
		opts.GraphDriverName = b.StorageDriver
	}
	// Later options override earlier ones in the drivers' parsers, so
	// berth's own options win over storage.conf's.
	opts.GraphDriverOptions = append(opts.GraphDriverOptions, b.StorageOptions...)
	if opts.GraphDriverName == "" && len(opts.GraphDriverPriority) == 0 {
		opts.GraphDriverPriority = []string{"overlay", "vfs"}
	}
	return opts, nil
}

// openStore opens containers/storage as the config says.
func openStore(cfg *config.Config, log *slog.Logger) (storage.Store, error) {
	opts, err := StoreOptions(cfg)
	if err != nil {
		return nil, fmt.Errorf("open image storage: %w (%w)", err, errdefs.ErrFailedPrecondition)
	}
	store, err := storage.GetStore(opts)
	if err != nil {
		return nil, fmt.Errorf("open image storage at %s (driver %q): %w", opts.GraphRoot, opts.GraphDriverName, err)
	}
	tmp := filepath.Join(store.GraphRoot(), "berth-tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		store.Shutdown(false)
		return nil, fmt.Errorf("create pull staging dir %s: %w", tmp, err)
	}
	log.Info("image storage opened", "root", store.GraphRoot(), "runroot", store.RunRoot(), "driver", store.GraphDriverName())
	return store, nil
}

// janitor removes the layers that failed pulls and imports leave behind:
// containers/image commits layers one by one and only deletes the image
// record when a later step fails, so the committed layers stay as
// orphans. Cleaning up while another write is in flight could delete a
// layer that write has just committed and not yet tied to its image, so
// the suspects are only removed when no pull or import of this process
// is running.
type janitor struct {
	mu       sync.Mutex
	inflight int
	suspects map[string]struct{}
}

// begin registers a write and returns the layers that exist before it.
func (j *janitor) begin(store storage.Store) map[string]struct{} {
	j.mu.Lock()
	j.inflight++
	j.mu.Unlock()
	before := map[string]struct{}{}
	if layers, err := store.Layers(); err == nil {
		for _, l := range layers {
			before[l.ID] = struct{}{}
		}
	}
	return before
}

// end unregisters a write. After a failure, the layers created since begin
// become suspects; the last write to finish deletes the suspects that no
// image, container or other layer refers to.
func (j *janitor) end(store storage.Store, before map[string]struct{}, failed bool, log *slog.Logger) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.inflight--
	if failed {
		if layers, err := store.Layers(); err == nil {
			for _, l := range layers {
				// Only layers unpacked from a blob carry digests; a
				// container's writable layer, created meanwhile by
				// someone else, never becomes a suspect.
				if l.CompressedDigest == "" && l.UncompressedDigest == "" && l.TOCDigest == "" {
					continue
				}
				if _, ok := before[l.ID]; !ok {
					if j.suspects == nil {
						j.suspects = map[string]struct{}{}
					}
					j.suspects[l.ID] = struct{}{}
				}
			}
		}
	}
	if j.inflight > 0 || len(j.suspects) == 0 {
		return
	}
	removeOrphans(store, j.suspects, log)
	clear(j.suspects)
}

// removeOrphans deletes the suspect layers nothing refers to, children
// before parents, until none is left to delete.
func removeOrphans(store storage.Store, suspects map[string]struct{}, log *slog.Logger) {
	for {
		used, err := usedLayers(store)
		if err != nil {
			log.Warn("image: cannot list storage to remove orphan layers", "error", err)
			return
		}
		removed := 0
		for id := range suspects {
			if used[id] {
				continue
			}
			delete(suspects, id)
			if err := store.DeleteLayer(id); err != nil {
				log.Warn("image: remove orphan layer", "layer", id, "error", err)
				continue
			}
			log.Info("image: removed layer left by a failed pull or import", "layer", id)
			removed++
		}
		if removed == 0 {
			return
		}
	}
}

// usedLayers returns the layers images, containers and child layers
// refer to.
func usedLayers(store storage.Store) (map[string]bool, error) {
	used := map[string]bool{}
	layers, err := store.Layers()
	if err != nil {
		return nil, err
	}
	for _, l := range layers {
		if l.Parent != "" {
			used[l.Parent] = true
		}
	}
	images, err := store.Images()
	if err != nil {
		return nil, err
	}
	for _, img := range images {
		used[img.TopLayer] = true
		for _, m := range img.MappedTopLayers {
			used[m] = true
		}
	}
	containers, err := store.Containers()
	if err != nil {
		return nil, err
	}
	for _, c := range containers {
		used[c.LayerID] = true
	}
	return used, nil
}
