package container

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/ociext"
	"github.com/berth-cri/berth/internal/pod"
)

// SpecExtensions edits a container's generated OCI spec with the node's
// extensions: CDI devices, OCI hooks, default mounts (ociext.Extensions).
type SpecExtensions interface {
	Apply(s *specs.Spec, req ociext.Request) error
}

// applyExtensions hands the request's CDI devices, its annotations and
// its pod's, and whether it has mounts, to the extensions.
func (m *Manager) applyExtensions(s *specs.Spec, sb *pod.Sandbox, cfg *runtimeapi.ContainerConfig) error {
	if m.ext == nil {
		return nil
	}
	req := ociext.Request{Annotations: cfg.GetAnnotations(), PodAnnotations: sb.Annotations, HasBindMounts: len(cfg.GetMounts()) > 0}
	for _, d := range cfg.GetCDIDevices() {
		req.CDIDevices = append(req.CDIDevices, d.GetName())
	}
	return m.ext.Apply(s, req)
}
