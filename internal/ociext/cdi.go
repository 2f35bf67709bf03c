package ociext

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"tags.cncf.io/container-device-interface/pkg/cdi"
	"tags.cncf.io/container-device-interface/pkg/parser"
	cdispec "tags.cncf.io/container-device-interface/specs-go"

	"github.com/berth-cri/berth/internal/errdefs"
)

// cdiRegistry resolves CDI device names through the CDI package's cache,
// which watches the spec dirs (a dir created later is picked up too).
type cdiRegistry struct {
	dirs  []string
	cache *cdi.Cache
	log   *slog.Logger
	// logged are the spec errors already logged, so that each is logged
	// once rather than at every creation.
	mu     sync.Mutex
	logged map[string]bool
}

// newCDIRegistry watches dirs; no dirs means CDI is off (the cdi
// package would take an empty list for its default dirs).
func newCDIRegistry(dirs []string, log *slog.Logger) *cdiRegistry {
	r := &cdiRegistry{dirs: slices.Clone(dirs), log: log, logged: map[string]bool{}}
	if len(dirs) > 0 {
		// NewCache never fails (its error is kept for API compatibility).
		r.cache, _ = cdi.NewCache(cdi.WithSpecDirs(dirs...), cdi.WithAutoRefresh(true))
		r.logErrors()
	}
	return r
}

func (r *cdiRegistry) close() {
	if r.cache != nil {
		// Turning auto-refresh off stops the cache's watcher.
		_ = r.cache.Configure(cdi.WithAutoRefresh(false))
	}
}

// requested returns the devices a container asks for: the cdi_devices of
// its config, then those of the CDI annotations the kubelet sets for
// device plugins (cdi.k8s.io/*), each once.
func requested(req Request) ([]string, error) {
	var out []string
	for _, n := range req.CDIDevices {
		if !parser.IsQualifiedName(n) {
			return nil, fmt.Errorf("CDI device %q is not a qualified name (vendor.com/class=name): %w", n, errdefs.ErrInvalidArgument)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	_, fromAnnotations, err := cdi.ParseAnnotations(req.Annotations)
	if err != nil {
		return nil, fmt.Errorf("CDI annotation: %w (%w)", err, errdefs.ErrInvalidArgument)
	}
	sort.Strings(fromAnnotations) // annotations come from a map
	for _, n := range fromAnnotations {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// inject resolves the requested devices and applies their specs' edits
// to s. An unknown device fails the creation with ErrNotFound; a device
// of a spec berth rejects (a device node outside /dev) with
// ErrFailedPrecondition.
func (r *cdiRegistry) inject(s *rspec.Spec, req Request) error {
	names, err := requested(req)
	if err != nil || len(names) == 0 {
		return err
	}
	if r.cache == nil {
		return fmt.Errorf("CDI devices %s: no CDI spec dirs are configured (cdi_spec_dirs): %w", strings.Join(names, ", "), errdefs.ErrNotFound)
	}
	// Refresh watches a spec dir created since the last look (and reads
	// it); its error repeats the spec errors logged below.
	_ = r.cache.Refresh()
	r.logErrors()
	for _, n := range names {
		d := r.cache.GetDevice(n)
		if d == nil {
			return fmt.Errorf("CDI device %s is not defined by any valid spec in %s: %w", n, strings.Join(r.dirs, ", "), errdefs.ErrNotFound)
		}
		if err := checkSpec(d.GetSpec().Spec); err != nil {
			return fmt.Errorf("CDI device %s: spec %s is rejected: %w (%w)", n, d.GetSpec().GetPath(), err, errdefs.ErrFailedPrecondition)
		}
	}
	before := len(linuxDevices(s))
	if unresolved, err := r.cache.InjectDevices(s, names...); err != nil {
		if len(unresolved) > 0 {
			return fmt.Errorf("CDI devices %s: %w (%w)", strings.Join(unresolved, ", "), err, errdefs.ErrNotFound)
		}
		return fmt.Errorf("inject CDI devices %s: %w", strings.Join(names, ", "), err)
	}
	// The specs were checked above; this catches one replaced in between.
	for _, d := range linuxDevices(s)[before:] {
		if !underDev(d.Path) {
			return fmt.Errorf("CDI devices %s: device node %s is outside /dev: %w", strings.Join(names, ", "), d.Path, errdefs.ErrFailedPrecondition)
		}
	}
	return nil
}

func linuxDevices(s *rspec.Spec) []rspec.LinuxDevice {
	if s.Linux == nil {
		return nil
	}
	return s.Linux.Devices
}

// checkSpec rejects a CDI spec with a device node (its path in the
// container or its host path) outside /dev: a node elsewhere could
// shadow a file of the container, and a runtime that bind-mounts device
// nodes (in a user namespace) would mount that host path.
func checkSpec(s *cdispec.Spec) error {
	if s == nil {
		return nil
	}
	edits := []*cdispec.ContainerEdits{&s.ContainerEdits}
	for i := range s.Devices {
		edits = append(edits, &s.Devices[i].ContainerEdits)
	}
	for _, e := range edits {
		for _, n := range e.DeviceNodes {
			if n == nil {
				continue
			}
			if !underDev(n.Path) {
				return fmt.Errorf("device node path %q is outside /dev", n.Path)
			}
			if n.HostPath != "" && !underDev(n.HostPath) {
				return fmt.Errorf("device node host path %q is outside /dev", n.HostPath)
			}
		}
	}
	return nil
}

func underDev(p string) bool {
	return filepath.IsAbs(p) && strings.HasPrefix(filepath.Clean(p), "/dev/")
}

// CDIReport lists the spec dirs, the devices that can be requested, and
// the spec files skipped with their errors.
type CDIReport struct {
	SpecDirs []string            `json:"spec_dirs"`
	Devices  []string            `json:"devices"`
	Errors   map[string][]string `json:"errors,omitempty"`
}

func (r *cdiRegistry) report() CDIReport {
	if r.cache == nil {
		return CDIReport{SpecDirs: []string{}, Devices: []string{}}
	}
	// Refresh picks up a dir created since the last look; its error
	// repeats the spec errors GetErrors returns.
	_ = r.cache.Refresh()
	r.logErrors()
	rep := CDIReport{SpecDirs: slices.Clone(r.dirs), Devices: []string{}, Errors: r.errors()}
	for _, n := range r.cache.ListDevices() {
		d := r.cache.GetDevice(n)
		if d == nil || checkSpec(d.GetSpec().Spec) != nil {
			continue
		}
		rep.Devices = append(rep.Devices, n)
	}
	return rep
}

// errors are the cache's spec errors plus the specs berth rejects.
func (r *cdiRegistry) errors() map[string][]string {
	out := map[string][]string{}
	for path, errs := range r.cache.GetErrors() {
		for _, e := range errs {
			// The cache lists a spec dir's own errors here too; a
			// missing dir is normal (it is looked for again).
			if slices.Contains(r.dirs, path) && errors.Is(e, os.ErrNotExist) {
				continue
			}
			out[path] = append(out[path], e.Error())
		}
	}
	for _, vendor := range r.cache.ListVendors() {
		for _, s := range r.cache.GetVendorSpecs(vendor) {
			if err := checkSpec(s.Spec); err != nil {
				out[s.GetPath()] = append(out[s.GetPath()], "rejected: "+err.Error())
			}
		}
	}
	for dir, err := range r.cache.GetSpecDirErrors() {
		if !errors.Is(err, os.ErrNotExist) && !slices.Contains(out[dir], err.Error()) {
			out[dir] = append(out[dir], err.Error())
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// logErrors logs each spec error once.
func (r *cdiRegistry) logErrors() {
	errs := r.errors()
	r.mu.Lock()
	defer r.mu.Unlock()
	for path, es := range errs {
		for _, e := range es {
			if k := path + "\x00" + e; !r.logged[k] {
				r.logged[k] = true
				r.log.Warn("CDI spec skipped", "file", path, "error", e)
			}
		}
	}
}
