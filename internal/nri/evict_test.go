package nri

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/containerd/nri/pkg/api"
)

// ctrSource is a fakeSource that also knows containers.
type ctrSource struct {
	*fakeSource
	mu   sync.Mutex
	ctrs map[string]*Container
}

func (c *ctrSource) NRIContainer(id string) (*Container, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ctr, ok := c.ctrs[id]; ok {
		return ctr, nil
	}
	return nil, fmt.Errorf("container %s not found", id)
}

// stopRecorder is the Updater whose stops are berth's stop path here: it
// records them and marks the container stopped.
type stopRecorder struct {
	fakeUpdater
	src   *ctrSource
	mu    sync.Mutex
	stops []string
}

func (r *stopRecorder) Stop(_ context.Context, id string, timeout int64) error {
	r.src.mu.Lock()
	ctr, ok := r.src.ctrs[id]
	if ok {
		ctr.State = api.ContainerState_CONTAINER_STOPPED
	}
	r.src.mu.Unlock()
	if !ok {
		return fmt.Errorf("container %s not found", id)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stops = append(r.stops, fmt.Sprintf("%s/%d", id, timeout))
	return nil
}

// stoppedCtrs is a plugin noting the containers it hears stopped.
type stoppedCtrs struct {
	seenPods
	stopped []string
}

func (p *stoppedCtrs) StopContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = append(p.stopped, c.GetId()+"/"+c.GetState().String())
	return nil, nil
}

// A plugin's eviction stops the container through the Updater (berth's
// stop path, with no grace period, as a kubelet eviction) and the
// plugins hear it stopped; one of a container that does not exist is
// logged and changes nothing.
func TestEvictionStopsThroughStopPath(t *testing.T) {
	src := &ctrSource{fakeSource: &fakeSource{pods: map[string]*Pod{"p": {Id: "p"}}}, ctrs: map[string]*Container{
		"victim": {Id: "victim", PodSandboxId: "p", State: api.ContainerState_CONTAINER_RUNNING},
	}}
	upd := &stopRecorder{src: src}
	s := newTestServiceWith(t, src, upd)
	plugin := &stoppedCtrs{seenPods: seenPods{seen: map[string]int{}}}
	connectPlugin(t, s, plugin)
	waitFor(t, "the plugin to be registered", func() bool { return s.Info().Count > 0 })

	s.evict(context.Background(), []*api.ContainerEviction{
		{ContainerId: "victim", Reason: "test: memory pressure"},
		{ContainerId: "no-such-container", Reason: "test: gone"},
	})
	upd.mu.Lock()
	stops := slices.Clone(upd.stops)
	upd.mu.Unlock()
	if !slices.Equal(stops, []string{"victim/0"}) {
		t.Fatalf("stops through the stop path: %v, want [victim/0]", stops)
	}
	plugin.mu.Lock()
	defer plugin.mu.Unlock()
	if !slices.Equal(plugin.stopped, []string{"victim/CONTAINER_STOPPED"}) {
		t.Fatalf("plugin heard stopped: %v", plugin.stopped)
	}
}
