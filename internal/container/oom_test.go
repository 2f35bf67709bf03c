package container

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/runtime"
	"github.com/berth-cri/berth/internal/spec"
)

// oomCounts is the metrics' OOM counter, by container name.
type oomCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *oomCounts) ContainerOOM(name string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n[name]++
}

func (o *oomCounts) ContainerRemoved(string) {}

// total is the count over every name.
func (o *oomCounts) total() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, c := range o.n {
		n += c
	}
	return n
}

// An OOM kill is counted once per container exit, however many notices of
// it arrive: an exit seen during the start is handled again after it, and
// a rescan delivers the exits dir again. (It was counted per notice, so a
// container OOM-killed as it started counted twice.)
func TestOOMKillCountedOncePerExit(t *testing.T) {
	e := newEnv(t)
	ooms := &oomCounts{n: map[string]int{}}
	m, err := New(Deps{
		Config: func() *config.Config { return e.cfg }, Log: testLog(t), Images: e.images, Events: e.events,
		Host: &spec.Host{}, Conmon: e.rt, OOM: ooms,
		Runtime: func(runtime.OCI) OCIRuntime { return e.rt },
		Layers:  func() (Layers, error) { return e.layers, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	e.m = m

	id := e.create("hog", "sh", "-c", "exit 137")
	// conmon leaves this file when the kernel's OOM killer ended the init.
	if err := os.WriteFile(filepath.Join(m.records.Path(id), runtime.OOMFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	e.await(id, evStopped)
	if st := e.status(id); st.GetReason() != ReasonOOMKilled {
		t.Fatalf("reason %q, want %s", st.GetReason(), ReasonOOMKilled)
	}
	if n := ooms.total(); n != 1 {
		t.Fatalf("OOM kills counted after the exit: %d, want 1", n)
	}
	// A second notice of the same exit.
	m.handleExit(id)
	if n := ooms.total(); n != 1 {
		t.Fatalf("OOM kills counted after a second notice of the exit: %d, want 1", n)
	}
}
