package lifecycle

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/container"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/nsmgr"
	"github.com/berth-cri/berth/internal/pod"
)

// fakeNS pins nothing: it only remembers the paths it handed out.
type fakeNS struct {
	root   string
	mu     sync.Mutex
	pinned map[string]bool
}

func (n *fakeNS) Path(kind, id string) string { return filepath.Join(n.root, kind, id) }

func (n *fakeNS) Pin(_ context.Context, req nsmgr.Request) (nsmgr.Paths, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := nsmgr.Paths{Net: n.Path(nsmgr.Net, req.ID), UTS: n.Path(nsmgr.UTS, req.ID)}
	n.pinned[p.Net], n.pinned[p.UTS] = true, true
	return p, nil
}

func (n *fakeNS) Unpin(p nsmgr.Paths) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.pinned, p.Net)
	delete(n.pinned, p.UTS)
	return nil
}

func (n *fakeNS) IsPinned(p string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pinned[p]
}

// fakeNet attaches every pod.
type fakeNet struct{}

func (fakeNet) Setup(context.Context, network.Attachment) (*network.Result, error) {
	return &network.Result{Network: "fakenet", IPs: []string{"10.88.0.2"}}, nil
}
func (fakeNet) Teardown(context.Context, network.Attachment, string) error { return nil }
func (fakeNet) Status() (bool, string, string)                             { return true, "", "" }
func (fakeNet) SetPodCIDR(string) error                                    { return nil }
func (fakeNet) Close() error                                               { return nil }

// fakeContainers is a container manager whose Create blocks until
// release is closed, and which notes what each pod teardown found.
type fakeContainers struct {
	entered chan struct{} // one value per Create begun
	release chan struct{}

	mu      sync.Mutex
	creates int
	ctrs    map[string][]string // by pod
	found   map[string][]string // by pod: what StopPodContainers or RemovePodContainers saw
}

func newFakeContainers() *fakeContainers {
	return &fakeContainers{entered: make(chan struct{}, 16), release: make(chan struct{}), ctrs: map[string][]string{}, found: map[string][]string{}}
}

// CreateAdjusted behaves like the real manager's: the creation (blocked
// until release) goes on when the client leaves, and it then returns at
// once while finished closes only when the container is registered.
func (f *fakeContainers) CreateAdjusted(ctx context.Context, sb *pod.Sandbox, cfg *runtimeapi.ContainerConfig, _ container.SpecAdjuster) (string, <-chan struct{}, error) {
	f.mu.Lock()
	f.creates++
	f.mu.Unlock()
	f.entered <- struct{}{}
	finished := make(chan struct{})
	id := fmt.Sprintf("%s-%s", sb.ID[:8], cfg.GetMetadata().GetName())
	go func() {
		<-f.release
		f.mu.Lock()
		f.ctrs[sb.ID] = append(f.ctrs[sb.ID], id)
		f.mu.Unlock()
		close(finished)
	}()
	select {
	case <-finished:
		return id, finished, nil
	case <-ctx.Done():
		return "", finished, ctx.Err()
	}
}

// The single-container operations are not under test here.
func (f *fakeContainers) Start(context.Context, string) error       { return nil }
func (f *fakeContainers) Stop(context.Context, string, int64) error { return nil }
func (f *fakeContainers) Remove(context.Context, string) error      { return nil }
func (f *fakeContainers) UpdateResources(context.Context, string, *runtimeapi.LinuxContainerResources) error {
	return nil
}

func (f *fakeContainers) teardown(podID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.found[podID] = append([]string{}, f.ctrs[podID]...)
}

func (f *fakeContainers) StopPodContainers(_ context.Context, podID string) error {
	f.teardown(podID)
	return nil
}

func (f *fakeContainers) RemovePodContainers(_ context.Context, podID string) error {
	f.teardown(podID)
	return nil
}

// seen reports what the teardown of pod id found, and whether it ran.
func (f *fakeContainers) seen(id string) ([]string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	found, ok := f.found[id]
	return found, ok
}

func (f *fakeContainers) createCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.creates
}
