package container

import (
	"fmt"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Seeded records load like the containers a manager ran and exited.
func TestSeedExitedLoadsAsExitedContainers(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	var metas []*Meta
	for i := range 3 {
		metas = append(metas, &Meta{ID: fmt.Sprintf("seeded%d", i), Name: fmt.Sprintf("k8s_s%d", i), PodID: "pod1",
			CtrName: fmt.Sprintf("s%d", i), CreatedAt: now.Add(time.Duration(i))})
	}
	if err := SeedExited(e.cfg.Berth.StateDir, metas, 3, now); err != nil {
		t.Fatal(err)
	}
	m := e.start(false)
	list := m.List(&runtimeapi.ContainerFilter{PodSandboxId: "pod1"})
	if len(list) != 3 {
		t.Fatalf("listed %d containers, want 3", len(list))
	}
	for i, c := range list {
		if c.GetId() != metas[i].ID || c.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED {
			t.Errorf("container %d: %s %v", i, c.GetId(), c.GetState())
		}
	}
	if err := SeedExited(e.cfg.Berth.StateDir, []*Meta{{ID: "x"}}, 0, now); err == nil {
		t.Error("a record without a pod was written")
	}
}
