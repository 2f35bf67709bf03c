package nri

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
)

// fakeSource holds pods; listing can be held after its snapshot is
// taken, to open the window a plugin synchronization races with.
type fakeSource struct {
	mu     sync.Mutex
	pods   map[string]*Pod
	listed chan struct{} // a value once per NRIPods snapshot, when set
	hold   chan struct{} // NRIPods returns once this is closed, when set
}

func (f *fakeSource) add(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pods[id] = &Pod{Id: id, Name: "pod-" + id}
}

func (f *fakeSource) NRIPod(id string) (*Pod, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.pods[id]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("pod %s not found", id)
}

func (f *fakeSource) NRIPods() []*Pod {
	f.mu.Lock()
	var out []*Pod
	for _, p := range f.pods {
		out = append(out, p)
	}
	listed, hold := f.listed, f.hold
	f.mu.Unlock()
	if listed != nil {
		listed <- struct{}{}
		<-hold
	}
	return out
}

func (f *fakeSource) NRIContainer(id string) (*Container, error) {
	return nil, fmt.Errorf("container %s not found", id)
}
func (f *fakeSource) NRIContainers() []*Container          { return nil }
func (f *fakeSource) NRIPodContainers(string) []*Container { return nil }

type fakeUpdater struct{}

func (fakeUpdater) UpdateResources(context.Context, string, *runtimeapi.LinuxContainerResources) error {
	return nil
}
func (fakeUpdater) Stop(context.Context, string, int64) error { return nil }

// seenPods is a plugin noting each pod it learns of, by sync or event.
type seenPods struct {
	mu   sync.Mutex
	seen map[string]int
}

func (p *seenPods) note(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen[id]++
}

func (p *seenPods) Synchronize(_ context.Context, pods []*api.PodSandbox, _ []*api.Container) ([]*api.ContainerUpdate, error) {
	for _, pod := range pods {
		p.note(pod.GetId())
	}
	return nil, nil
}

func (p *seenPods) RunPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.note(pod.GetId())
	return nil
}

func newTestService(t *testing.T, src Source) *Service {
	t.Helper()
	return newTestServiceWith(t, src, fakeUpdater{})
}

func newTestServiceWith(t *testing.T, src Source, upd Updater) *Service {
	t.Helper()
	c := config.Default().Berth.NRI
	dir := t.TempDir()
	c.Listen, c.PluginDir, c.PluginConfigDir = filepath.Join(dir, "nri.sock"), filepath.Join(dir, "plugins"), filepath.Join(dir, "conf.d")
	s, err := New(Options{Config: c, Name: "berth-test", Version: "0", Source: src, Updater: upd, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func connectPlugin(t *testing.T, s *Service, p any) {
	t.Helper()
	st, err := stub.New(p, stub.WithSocketPath(s.socket), stub.WithPluginName("seen"), stub.WithPluginIdx("10"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = st.Start(ctx) }()
	t.Cleanup(st.Stop)
}

// A pod made while a new plugin is being synchronized reaches it exactly
// once: Block holds the pod's run until the plugin is registered, so the
// pod is neither missing from both the synchronization and the events
// nor in both.
func TestPodRunDuringSynchronizationSeenOnce(t *testing.T) {
	src := &fakeSource{pods: map[string]*Pod{"old": {Id: "old"}}}
	s := newTestService(t, src)
	// Hold the listing of the plugin's synchronization, not of the start.
	src.mu.Lock()
	src.listed, src.hold = make(chan struct{}, 1), make(chan struct{})
	src.mu.Unlock()
	plugin := &seenPods{seen: map[string]int{}}
	connectPlugin(t, s, plugin)
	<-src.listed // the synchronization took its snapshot and waits

	ran := make(chan struct{})
	go func() {
		defer close(ran)
		unblock := s.Block()
		defer unblock()
		src.add("new")
		if err := s.RunPodSandbox(context.Background(), "new"); err != nil {
			t.Error(err)
		}
	}()
	close(src.hold)
	<-ran
	waitFor(t, "the synchronization to reach the plugin", func() bool {
		plugin.mu.Lock()
		defer plugin.mu.Unlock()
		return plugin.seen["old"] > 0
	})

	plugin.mu.Lock()
	defer plugin.mu.Unlock()
	if plugin.seen["old"] != 1 || plugin.seen["new"] != 1 {
		t.Fatalf("plugin saw %v, want each pod once", plugin.seen)
	}
	if info := s.Info(); !slices.ContainsFunc(info.Plugins, func(p PluginInfo) bool { return p.Name == "10-seen" }) {
		t.Fatalf("Info lists %+v", info)
	}
}

// A RunPodSandbox delivered once is not delivered again for a retry.
func TestRunPodSandboxOnce(t *testing.T) {
	src := &fakeSource{pods: map[string]*Pod{}}
	s := newTestService(t, src)
	plugin := &seenPods{seen: map[string]int{}}
	connectPlugin(t, s, plugin)
	waitFor(t, "the plugin to be registered", func() bool { return s.Info().Count > 0 })
	src.add("p")
	for range 2 {
		if err := s.RunPodSandbox(context.Background(), "p"); err != nil {
			t.Fatal(err)
		}
	}
	plugin.mu.Lock()
	defer plugin.mu.Unlock()
	if plugin.seen["p"] != 1 {
		t.Fatalf("RunPodSandbox delivered %d times", plugin.seen["p"])
	}
}

// A disabled service (enable_nri = false) is nil and does nothing.
func TestDisabledDoesNothing(t *testing.T) {
	c := config.Default().Berth.NRI
	c.Enable = false
	s, err := New(Options{Config: c})
	if err != nil || s != nil {
		t.Fatalf("New with NRI off: %v, %v", s, err)
	}
	ctx := context.Background()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	s.Block()()
	if err := s.RunPodSandbox(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	spec := &rspec.Spec{Process: &rspec.Process{Env: []string{"A=1"}}}
	if err := s.NewCreation("x", nil).AdjustSpec(ctx, "c", spec); err != nil || len(spec.Process.Env) != 1 {
		t.Fatalf("adjusted while off: %v %v", err, spec.Process.Env)
	}
	r := &runtimeapi.LinuxContainerResources{CpuShares: 2}
	if got, err := s.UpdateContainer(ctx, "c", r); err != nil || got != r {
		t.Fatalf("UpdateContainer while off: %v %v", got, err)
	}
	s.StopPodSandbox(ctx, "x")
	s.RemoveContainer(ctx, nil)
	s.Stop()
	if info := s.Info(); info.Enabled || info.Plugins == nil {
		t.Fatalf("Info while off: %+v", info)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
