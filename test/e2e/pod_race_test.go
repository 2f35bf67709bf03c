package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A container created while its pod is being stopped or removed never
// outlives that stop or removal: either the creation is refused, or the
// stop finds and stops it (the removal removes it). Without the rule this
// left containers in created state in stopped pods, and containers of
// pods that no longer existed. Delays vary per round to cover the window
// from before the creation's pod check to its registration.
func TestCreateContainerRacesPodStopAndRemove(t *testing.T) {
	e := startCtrEnv(t)
	const rounds = 12
	for i := range rounds {
		delay := time.Duration(i%6) * 8 * time.Millisecond
		cfg := podConfig(fmt.Sprintf("race-%d", i))
		cfg.LogDirectory = e.logDir
		podID := runPod(t, e.d, cfg)
		e.pod, e.podCfg = podID, cfg

		created := raceCreate(t, e, "stop", delay, func() error {
			_, err := e.d.Runtime.StopPodSandbox(ctxT(t, time.Minute), &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID})
			return err
		})
		for _, c := range podContainers(t, e, podID) {
			if c.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED {
				t.Fatalf("round %d: container %s is %v after its pod was stopped (create returned %v)", i, c.GetId(), c.GetState(), created)
			}
		}

		created = raceCreate(t, e, "remove", delay, func() error {
			_, err := e.d.Runtime.RemovePodSandbox(ctxT(t, time.Minute), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID})
			return err
		})
		if left := podContainers(t, e, podID); len(left) > 0 {
			t.Fatalf("round %d: %d containers of removed pod %s left (create returned %v)", i, len(left), podID, created)
		}
	}
}

// raceCreate runs a CreateContainer in the test pod and, delay later,
// teardown; it returns the creation's error (nil if it made a container).
func raceCreate(t *testing.T, e *ctrEnv, name string, delay time.Duration, teardown func() error) error {
	t.Helper()
	var wg sync.WaitGroup
	var createErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, createErr = e.create(t, e.config(name, "sleep", "60"))
	}()
	time.Sleep(delay)
	if err := teardown(); err != nil {
		t.Fatalf("%s pod: %v", name, err)
	}
	wg.Wait()
	return createErr
}

func podContainers(t *testing.T, e *ctrEnv, podID string) []*runtimeapi.Container {
	t.Helper()
	resp, err := e.d.Runtime.ListContainers(ctxT(t, time.Minute), &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID},
	})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetContainers()
}
