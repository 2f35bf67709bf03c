package pod

import (
	"context"
	"errors"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// A pod Run made is hidden until Publish: not listed, not found by Get,
// admitting no container, not announced; the hooks between find it with
// GetUnpublished. A restarted manager publishes the pods it loads.
func TestPodHiddenUntilPublished(t *testing.T) {
	e := newEnv(t)
	m := e.start()
	id, err := m.Run(context.Background(), podConfig("hidden"), "")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(m.List(Filter{})); n != 0 {
		t.Errorf("List shows %d pods before Publish", n)
	}
	if _, err := m.Get(id); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Get before Publish: %v, want not found", err)
	}
	if _, _, err := m.Admit(id); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Admit before Publish: %v, want not found", err)
	}
	if sb, err := m.GetUnpublished(id); err != nil || sb.ID != id {
		t.Errorf("GetUnpublished: %v, %v", sb, err)
	}
	select {
	case ev := <-e.sub.C:
		t.Errorf("event before Publish: %v", ev.ContainerEventResponse.GetContainerEventType())
	default:
	}

	if err := m.Publish(id); err != nil {
		t.Fatal(err)
	}
	e.await(id, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT)
	if n := len(m.List(Filter{})); n != 1 {
		t.Errorf("List shows %d pods after Publish", n)
	}
	_, done, err := m.Admit(id)
	if err != nil {
		t.Fatalf("Admit after Publish: %v", err)
	}
	done()

	// A pod unpublished when berthd stopped is published by the next one.
	id2, err := m.Run(context.Background(), podConfig("hidden-at-restart"), "")
	if err != nil {
		t.Fatal(err)
	}
	m = e.restart()
	if _, err := m.Get(id2); err != nil {
		t.Errorf("a loaded pod is not published: %v", err)
	}
}
