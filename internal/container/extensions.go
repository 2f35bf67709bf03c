package container

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/ociext"
)

// SpecExtensions edits a container's generated OCI spec with the node's
// extensions: CDI devices, OCI hooks, default mounts (ociext.Extensions).
type SpecExtensions interface {
	Apply(s *specs.Spec, req ociext.Request) error
}

// applyExtensions hands the request's CDI devices, annotations and
// whether it bind-mounts host paths to the extensions.
func (m *Manager) applyExtensions(s *specs.Spec, cfg *runtimeapi.ContainerConfig) error {
	if m.ext == nil {
		return nil
	}
	req := ociext.Request{Annotations: cfg.GetAnnotations()}
	for _, d := range cfg.GetCDIDevices() {
		req.CDIDevices = append(req.CDIDevices, d.GetName())
	}
	for _, mt := range cfg.GetMounts() {
		if mt.GetHostPath() != "" {
			req.HasBindMounts = true
		}
	}
	return m.ext.Apply(s, req)
}
