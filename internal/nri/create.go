package nri

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/api"
	nrigen "github.com/containerd/nri/pkg/runtime-tools/generate"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	rtgen "github.com/opencontainers/runtime-tools/generate"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Creation is the NRI part of one container creation: the container
// manager hands it the finished spec (AdjustSpec) before the runtime sees
// it, and the caller ends it with Finish once the creation is over.
type Creation struct {
	s     *Service
	podID string
	cfg   *runtimeapi.ContainerConfig

	mu       sync.Mutex
	adjusted *Container // the container as plugins saw it, once they did
}

// NewCreation starts the NRI part of creating a container from cfg in
// pod podID. On a nil Service it adjusts nothing.
func (s *Service) NewCreation(podID string, cfg *runtimeapi.ContainerConfig) *Creation {
	return &Creation{s: s, podID: podID, cfg: cfg}
}

// AdjustSpec relays CreateContainer to the plugins with the container
// described by its spec, and applies their adjustments to the spec. The
// updates they ask for other containers are applied, and their
// evictions done. A plugin's error fails the creation.
func (c *Creation) AdjustSpec(ctx context.Context, id string, spec *rspec.Spec) (err error) {
	s := c.s
	if !s.active() {
		return nil
	}
	// This runs in the container manager's creation goroutine: a plugin's
	// malformed adjustment that trips the module's helpers must fail this
	// creation, not berthd.
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("NRI: panic while adjusting a container", "container", id, "panic", p)
			err = fmt.Errorf("NRI: adjusting container %s failed: %v", id, p)
		}
	}()
	pod, err := s.src.NRIPod(c.podID)
	if err != nil {
		return fmt.Errorf("NRI: %w", err)
	}
	ctr := FromSpec(ContainerMeta{
		ID: id, PodID: c.podID, Name: c.cfg.GetMetadata().GetName(), State: api.ContainerState_CONTAINER_UNKNOWN,
		Labels: c.cfg.GetLabels(), Annotations: c.cfg.GetAnnotations(), CreatedAt: time.Now().UnixNano(),
	}, spec)
	rsp, err := s.nri.CreateContainer(ctx, &api.CreateContainerRequest{Pod: pod, Container: ctr})
	if err != nil {
		return fmt.Errorf("NRI: %w", err)
	}
	c.mu.Lock()
	c.adjusted = ctr
	c.mu.Unlock()
	if adj := rsp.GetAdjust(); adj != nil {
		g := rtgen.NewFromSpec(spec)
		injectCDI := refuseCDI
		if s.cdi != nil {
			injectCDI = s.cdi.InjectCDIDevices
		}
		gen := nrigen.SpecGenerator(&g, nrigen.WithResourceChecker(checkResources),
			nrigen.WithCDIDeviceInjector(injectCDI), nrigen.WithBlockIOResolver(refuseClass("block I/O")),
			nrigen.WithRdtResolver(refuseClassRdt))
		if err := gen.Adjust(adj); err != nil {
			return fmt.Errorf("NRI: apply the plugins' adjustment: %w (%w)", err, errdefs.ErrInvalidArgument)
		}
		s.log.Debug("NRI: container adjusted", "container", id, "adjustment", adj.String())
	}
	s.applyUpdates(ctx, rsp.GetUpdate(), id)
	s.evict(ctx, rsp.GetEvict())
	return nil
}

// Finish ends the creation once no part of it is under way; id is what
// the create request returned (it may name a container an earlier,
// abandoned request made). Plugins hear PostCreateContainer of the
// container made; a container they adjusted that was not made is
// reported stopped and removed, so that they release what they set
// aside for it.
func (c *Creation) Finish(ctx context.Context, id string) {
	s := c.s
	if s == nil {
		return
	}
	c.mu.Lock()
	adjusted := c.adjusted
	c.mu.Unlock()
	if adjusted != nil {
		if s.ContainerData(adjusted.GetId()) == nil {
			s.RemoveContainer(ctx, adjusted)
		} else {
			s.PostCreateContainer(ctx, adjusted.GetId())
		}
	}
	if id != "" && (adjusted == nil || id != adjusted.GetId()) {
		s.PostCreateContainer(ctx, id)
	}
}

// Without a resolver the module's generator would drop these silently;
// a plugin asking for them must learn that berth cannot do them.
func refuseCDI(_ *rspec.Spec, names []string) error {
	return fmt.Errorf("CDI devices %v: no CDI resolver is wired in", names)
}

func refuseClass(kind string) func(string) (*rspec.LinuxBlockIO, error) {
	return func(class string) (*rspec.LinuxBlockIO, error) {
		return nil, fmt.Errorf("%s class %q: berth has no %s classes configured", kind, class, kind)
	}
}

func refuseClassRdt(class string) (*rspec.LinuxIntelRdt, error) {
	return nil, fmt.Errorf("RDT class %q: berth has no RDT classes configured", class)
}

// checkResources refuses what the adjusted spec cannot run with.
func checkResources(r *rspec.LinuxResources) error {
	if m := r.Memory; m != nil && m.Limit != nil && m.Swap != nil && *m.Swap > 0 && *m.Swap < *m.Limit {
		return fmt.Errorf("memory swap limit %d is below the memory limit %d", *m.Swap, *m.Limit)
	}
	return nil
}
