package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.podman.io/storage"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/container"
	"github.com/berth-cri/berth/internal/image"
	"github.com/berth-cri/berth/internal/pod"
	"github.com/berth-cri/berth/internal/runtime"
)

// Wipe removes every pod and container berth knows of, as `crio wipe`
// does: it kills their conmons and runtime containers, tears down pods
// (CNI DEL, /dev/shm, pinned namespaces), deletes the writable layers
// berth made and all records. Images stay. It refuses while berthd runs
// (the run-dir lock is held).
func Wipe(ctx context.Context, loader config.Loader, log *slog.Logger) error {
	cfg, err := loader.Load()
	if err != nil {
		return err
	}
	b := cfg.Berth
	for _, dir := range []string{b.StateDir, b.RunDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	lock, err := lockRunDir(b.RunDir)
	if err != nil {
		return fmt.Errorf("wipe: %w", err)
	}
	defer lock.Close()
	current := func() *config.Config { return cfg }

	exitDir := filepath.Join(b.RunDir, "exits")
	conmons := runtime.FindConmons(exitDir)
	for id, p := range conmons {
		_ = p.Signal(syscall.SIGKILL)
		log.Info("wipe: killed conmon", "id", id, "pid", p.PID)
	}
	killed := 0
	for _, rt := range runtime.Configured(cfg) {
		list, err := rt.List(ctx)
		if err != nil {
			log.Warn("wipe: runtime list", "runtime", rt.Path, "error", err)
			continue
		}
		for _, s := range list {
			if strings.HasPrefix(s.Bundle, filepath.Clean(b.RunDir)+"/") {
				if err := rt.Delete(ctx, s.ID, true); err != nil {
					log.Warn("wipe: runtime delete", "id", s.ID, "error", err)
					continue
				}
				killed++
			}
		}
	}

	pods, err := pod.New(pod.Deps{Config: current, Log: log.With("component", "pod")})
	if err != nil {
		return err
	}
	defer pods.Close()
	pods.Recover(ctx, true)
	npods := 0
	for _, sb := range pods.List(pod.Filter{}) {
		if err := pods.Remove(ctx, sb.ID); err != nil {
			log.Warn("wipe: remove pod", "id", sb.ID, "error", err)
			continue
		}
		npods++
	}
	sw := pods.Sweep(ctx)

	volumes, err := container.RecordedImageVolumes(b.StateDir)
	if err != nil {
		log.Warn("wipe: read the images containers mount as volumes", "error", err)
	}
	if err := container.ReleaseAllIDMapped(b.RunDir); err != nil {
		log.Warn("wipe: idmapped mounts", "error", err)
	}
	nstorage, err := wipeStorage(current, log, volumes)
	if err != nil {
		log.Warn("wipe: storage", "error", err)
	}
	for _, p := range []string{
		filepath.Join(b.StateDir, "containers"), filepath.Join(b.StateDir, "pods"),
		filepath.Join(b.RunDir, "containers"), filepath.Join(b.RunDir, "pods"),
		exitDir, filepath.Join(b.RunDir, "attach"), filepath.Join(b.RunDir, "idmap"),
	} {
		if err := os.RemoveAll(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("wipe %s: %w", p, err)
		}
	}
	log.Info("wiped", "conmons", len(conmons), "runtime_containers", killed, "pods", npods,
		"orphans", sw.Total(), "storage_containers", nstorage)
	return nil
}

// wipeStorage deletes the writable layers berth made (their metadata
// names a pod) and unmounts the images its containers mounted as volumes
// (imageVolumes); it opens storage only if it exists.
func wipeStorage(current func() *config.Config, log *slog.Logger, imageVolumes []string) (int, error) {
	opts, err := image.StoreOptions(current())
	if err != nil {
		return 0, err
	}
	if _, err := os.Stat(opts.GraphRoot); err != nil {
		return 0, nil
	}
	imgs := image.New(current, log.With("component", "image"), nil)
	defer imgs.Close()
	st, err := imgs.Store()
	if err != nil {
		return 0, err
	}
	ctrs, err := st.Containers()
	if err != nil {
		return 0, fmt.Errorf("list storage containers: %w", err)
	}
	n := 0
	for _, c := range ctrs {
		var md map[string]string
		if json.Unmarshal([]byte(c.Metadata), &md) != nil || md["pod-id"] == "" {
			continue
		}
		_, _ = st.Unmount(c.ID, true)
		if err := st.DeleteContainer(c.ID); err != nil {
			log.Warn("wipe: storage container", "id", c.ID, "error", err)
			continue
		}
		n++
	}
	for _, id := range imageVolumes {
		if _, err := st.UnmountImage(id, true); err != nil && !errors.Is(err, storage.ErrImageUnknown) {
			log.Warn("wipe: unmount image volume", "image", id, "error", err)
		}
	}
	return n, nil
}

// wipeTimeout bounds `berthd wipe`.
const wipeTimeout = 5 * time.Minute

// WipeMain runs Wipe with a timeout and a text logger on stderr.
func WipeMain(ctx context.Context, loader config.Loader) error {
	ctx, cancel := context.WithTimeout(ctx, wipeTimeout)
	defer cancel()
	return Wipe(ctx, loader, slog.New(slog.NewTextHandler(os.Stderr, nil)))
}
