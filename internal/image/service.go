// Package image is berth's image service: pulling, listing, inspecting and
// removing images in containers/storage, with containers/image doing the
// registry work, plus offline import and export of image archives.
//
// The service owns the containers/storage Store of the daemon (or of the
// CLI, for import and export). Storage is opened on first use so that
// daemon start-up stays cheap; Store hands it to the other services that
// need it (container creation mounts images from it).
package image

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

	ociv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
)

// Service answers the CRI ImageService and the offline import/export.
// It is safe for concurrent use.
type Service struct {
	config func() *config.Config
	log    *slog.Logger
	// observer, if set, counts pulled and reused blobs.
	observer PullObserver

	// mu guards the lazily opened store and closed.
	mu     sync.Mutex
	store  storage.Store
	closed bool

	// pulls deduplicates concurrent pulls of the same image.
	pulls flightGroup
	// janitor removes the layers a failed pull or import leaves behind.
	janitor janitor
	// mounts counts the containers using each image as a volume.
	mounts imageMounts

	// configs caches image configs by image ID: an ID is the digest of
	// its config, so an entry never goes stale, and ImageStatus (called
	// by the kubelet for every container start) stays cheap.
	cfgMu   sync.Mutex
	configs map[string]*ociv1.Image
}

// New returns a Service reading the current config through cfg; observer,
// if not nil, is told of pulled blobs. Nothing is opened until the first
// call that needs storage.
func New(cfg func() *config.Config, log *slog.Logger, observer PullObserver) *Service {
	return &Service{
		config:   cfg,
		log:      log,
		observer: observer,
		configs:  map[string]*ociv1.Image{},
	}
}

// Reload makes the next pull see the registries.conf and policy.json on
// disk. The new config snapshot is already published when it is called;
// policy.json is read afresh by every pull, but containers/image caches
// the parsed registries.conf per path, so the cache must be dropped.
func (s *Service) Reload() {
	sysregistriesv2.InvalidateCache()
	s.log.Info("image: registries.conf and policy.json will be re-read by the next pull")
}

// Store returns the containers/storage Store, opening it on first use.
// Callers must not Shutdown it: Close does.
func (s *Service) Store() (storage.Store, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("image storage is closed: %w", errdefs.ErrUnavailable)
	}
	if s.store != nil {
		return s.store, nil
	}
	store, err := openStore(s.config(), s.log)
	if err != nil {
		return nil, err
	}
	s.store = store
	return store, nil
}

// Close cancels the pulls still running (their callers are gone by
// then: the gRPC server stops first), waits for them to clean up, and
// shuts storage down, if it was opened. Layers still mounted by running
// containers stay mounted: containers outlive the daemon.
func (s *Service) Close() error {
	s.mu.Lock()
	s.closed = true // pulls starting from now fail at Store
	s.mu.Unlock()
	s.pulls.stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store == nil {
		return nil
	}
	store := s.store
	s.store = nil
	if _, err := store.Shutdown(false); err != nil {
		if errors.Is(err, storage.ErrLayerUsedByContainer) {
			s.log.Info("image storage closed; container layers stay mounted")
			return nil
		}
		return fmt.Errorf("shut down image storage: %w", err)
	}
	return nil
}

// systemContext builds the containers/image settings of one operation from
// the current config. Every path is explicit so that berth never reads or
// writes the host's per-user defaults (~/.config, /var/lib/containers/cache).
func (s *Service) systemContext(cfg *config.Config) *types.SystemContext {
	img := cfg.Berth.Image
	// berth applies its own short-name mode (see candidates), so
	// containers/image is told never to prompt or record aliases.
	disabled := types.ShortNameModeDisabled
	return &types.SystemContext{
		SystemRegistriesConfPath:    img.RegistriesConf,
		SystemRegistriesConfDirPath: img.RegistriesConfDir,
		SignaturePolicyPath:         img.SignaturePolicy,
		AuthFilePath:                img.GlobalAuthFile,
		DockerPerHostCertDirPath:    img.CertsDir,
		ShortNameMode:               &disabled,
		// Aliases are only read, never recorded, but the path must not
		// fall back to the host's user cache.
		UserShortNameAliasConfPath: filepath.Join(cfg.Berth.StateDir, "short-name-aliases.conf"),
		BlobInfoCacheDir:           filepath.Join(cfg.Berth.StateDir, "blob-info-cache"),
		// Downloaded blobs are staged next to storage, not in /var/tmp:
		// they are as large as the layers and belong on the same disk.
		BigFilesTemporaryDir: filepath.Join(cfg.Berth.Root, "berth-tmp"),
	}
}
