// Package ociext applies the node's extensions of a container's OCI spec,
// as CRI-O users configure them: CDI devices (resolved from the CDI spec
// dirs), OCI hooks (the containers hooks.d JSON format) and the default
// mounts of mounts.conf. The container manager calls Apply on the spec
// internal/spec generated, before it writes the bundle.
//
// CDI spec dirs and hook dirs are watched, so new files take effect
// without a restart; the default mounts file is read at each creation.
// A broken CDI spec or hook file is logged and skipped, never fatal, and
// both are listed in Report (the info endpoint and `berth info`).
package ociext

import (
	"fmt"
	"log/slog"
	"sync"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-cri/berth/internal/config"
)

// Request is what Apply needs to know of one container besides its spec.
type Request struct {
	// CDIDevices are the fully qualified CDI names of ContainerConfig.cdi_devices.
	CDIDevices []string
	// Annotations are the container's CRI annotations: CDI device
	// requests (cdi.k8s.io/*) are taken from them.
	Annotations map[string]string
	// PodAnnotations are the pod's: hooks match them too (as in CRI-O),
	// CDI requests never (the kubelet does not pass pod annotations to
	// containers, and a pod must not help itself to devices).
	PodAnnotations map[string]string
	// HasBindMounts says whether the CRI request has mounts (a hook's
	// "hasBindMounts" condition).
	HasBindMounts bool
}

// Extensions holds the CDI registry and the hooks; both are loaded, and
// their dirs watched, on first use.
type Extensions struct {
	cfg func() *config.Config
	log *slog.Logger

	mu   sync.Mutex
	cdi  *cdiRegistry // nil until first use
	hook *hookSet
}

// New returns the extensions of the config cfg returns; it reads nothing
// yet. cdi_spec_dirs and hooks_dir are taken from the config current at
// first use (changing them needs a restart); default_mounts_file is read
// from the current config at every Apply.
func New(cfg func() *config.Config, log *slog.Logger) *Extensions {
	if log == nil {
		log = slog.Default()
	}
	return &Extensions{cfg: cfg, log: log}
}

// parts loads the CDI registry and the hooks on first use.
func (x *Extensions) parts() (*cdiRegistry, *hookSet) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.cdi == nil {
		rc := x.cfg().Berth.Runtime
		x.cdi = newCDIRegistry(rc.CDISpecDirs, x.log.With("part", "cdi"))
		x.hook = newHookSet(rc.HooksDirs, x.log.With("part", "hooks"))
	}
	return x.cdi, x.hook
}

// Close stops watching the CDI spec dirs and the hook dirs, if they were
// ever loaded.
func (x *Extensions) Close() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.cdi != nil {
		x.cdi.close()
		x.hook.close()
		x.cdi, x.hook = nil, nil
	}
}

// Apply edits s for one container: the default mounts first (a mount the
// request already has at the same destination wins), then the CDI
// devices requested (device nodes, mounts, env, hooks of their specs),
// then the OCI hooks whose conditions match the finished spec and the
// pod's annotations.
func (x *Extensions) Apply(s *rspec.Spec, req Request) error {
	cdiReg, hooks := x.parts()
	if err := addDefaultMounts(s, x.cfg().Berth.Runtime.DefaultMountsFile, x.log); err != nil {
		return err
	}
	if err := cdiReg.inject(s, req); err != nil {
		return err
	}
	if err := hooks.apply(s, req.PodAnnotations, req.HasBindMounts); err != nil {
		return fmt.Errorf("OCI hooks: %w", err)
	}
	return nil
}

// InjectCDIDevices resolves and injects CDI devices named by another
// source than the CRI request (an NRI plugin's adjustment), with the
// same checks and errors as Apply.
func (x *Extensions) InjectCDIDevices(s *rspec.Spec, names []string) error {
	cdiReg, _ := x.parts()
	return cdiReg.inject(s, Request{CDIDevices: names})
}

// Report is what the info endpoint and `berth info` show.
type Report struct {
	CDI           CDIReport    `json:"cdi"`
	Hooks         HooksReport  `json:"hooks"`
	DefaultMounts MountsReport `json:"default_mounts"`
}

// Report lists the known CDI devices, the loaded hooks and the default
// mounts, with the files that were skipped and why.
func (x *Extensions) Report() Report {
	cdiReg, hooks := x.parts()
	return Report{
		CDI:           cdiReg.report(),
		Hooks:         hooks.report(),
		DefaultMounts: defaultMountsReport(x.cfg().Berth.Runtime.DefaultMountsFile),
	}
}
