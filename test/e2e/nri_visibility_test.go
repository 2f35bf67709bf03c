package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// A pod whose RunPodSandbox hook has not returned is neither listed, nor
// found by PodSandboxStatus, nor given a container, nor announced as an
// event; a retry of the request waits for the hook too. Once the hook
// returns, the pod is all of these.
func TestNRIPodHiddenUntilRunPodSandboxHookReturns(t *testing.T) {
	e := startNRIEnv(t, "nri_plugin_request_timeout = \"2m\"\n", nil)
	release := filepath.Join(e.dir, "release")
	_, log := e.connect(t, "50", "gate", "-release-run-pod", release)

	events, err := e.d.Runtime.GetContainerEvents(ctxT(t, 3*time.Minute), &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	podEvents := make(chan *runtimeapi.ContainerEventResponse, 16)
	go func() {
		for {
			ev, err := events.Recv()
			if err != nil {
				return
			}
			if ev.GetPodSandboxStatus().GetMetadata().GetName() == "nri-gated" {
				podEvents <- ev
			}
		}
	}()
	type ran struct {
		id  string
		err error
	}
	cfg := podConfig("nri-gated")
	first, retry := make(chan ran, 1), make(chan ran, 1)
	runAsync := func(out chan<- ran) {
		resp, err := e.d.Runtime.RunPodSandbox(ctxT(t, 2*time.Minute), &runtimeapi.RunPodSandboxRequest{Config: cfg})
		out <- ran{resp.GetPodSandboxId(), err}
	}
	go runAsync(first)

	var podID string
	eventually(t, "the plugin is in the pod's RunPodSandbox hook", func() bool {
		for _, ev := range testutil.ReadNRIEvents(t, log) {
			if ev.Event == "RunPodSandbox" && ev.PodName == "nri-gated" {
				podID = ev.PodID
				return true
			}
		}
		return false
	})
	go runAsync(retry) // the kubelet's retry of a request that timed out

	if slices.Contains(podNames(t, e.d), "nri-gated") {
		t.Errorf("ListPodSandbox shows the pod while its RunPodSandbox hook runs")
	}
	_, err = e.d.Runtime.PodSandboxStatus(ctxT(t, 10*time.Second), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	if status.Code(err) != codes.NotFound {
		t.Errorf("PodSandboxStatus while the hook runs: %v, want NotFound", err)
	}
	_, err = e.d.Runtime.CreateContainer(ctxT(t, 10*time.Second), &runtimeapi.CreateContainerRequest{
		PodSandboxId: podID, SandboxConfig: cfg, Config: e.config("too-early", "sleep", "3600"),
	})
	if status.Code(err) != codes.NotFound {
		t.Errorf("CreateContainer in the pod while its hook runs: %v, want NotFound", err)
	}
	select {
	case r := <-retry:
		t.Errorf("the retried RunPodSandbox answered (%q, %v) before the hook returned", r.id, r.err)
		retry <- r
	case ev := <-podEvents:
		t.Errorf("the pod was announced (%v) before its hook returned", ev.GetContainerEventType())
	default:
	}

	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]chan ran{"first": first, "retry": retry} {
		if r := <-ch; r.err != nil || r.id != podID {
			t.Fatalf("%s RunPodSandbox after the hook returned: %q, %v (want %s)", name, r.id, r.err, podID)
		}
	}
	if !slices.Contains(podNames(t, e.d), "nri-gated") {
		t.Fatalf("the pod is not listed after its hook returned: %v", podNames(t, e.d))
	}
	if _, err := e.d.Runtime.PodSandboxStatus(ctxT(t, 10*time.Second), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("PodSandboxStatus after the hook returned: %v", err)
	}
	select {
	case ev := <-podEvents:
		if ev.GetContainerEventType() != runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT {
			t.Errorf("first event of the pod: %v, want CONTAINER_CREATED_EVENT", ev.GetContainerEventType())
		}
	case <-time.After(30 * time.Second):
		t.Errorf("no event announced the pod after its hook returned")
	}
}
