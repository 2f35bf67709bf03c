package lifecycle

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/pod"
)

// newPods is the real pod manager on fakes of nsmgr and CNI, with one
// ready pod (its own network; no PID holder).
func newPods(t *testing.T) (*pod.Manager, string) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Berth.StateDir, cfg.Berth.RunDir, cfg.Berth.LogDir = filepath.Join(dir, "state"), filepath.Join(dir, "run"), filepath.Join(dir, "log")
	cfg.Berth.Runtime.CgroupManager = "systemd" // no cgroup made here
	pods, err := pod.New(pod.Deps{Config: func() *config.Config { return cfg }, Log: slog.New(slog.NewTextHandler(t.Output(), nil)),
		Namespaces: &fakeNS{root: filepath.Join(dir, "ns"), pinned: map[string]bool{}}, Network: fakeNet{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pods.Close() })
	id, err := pods.Run(context.Background(), &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "ns", Uid: "u1"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_NODE}}},
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := pods.Publish(id); err != nil {
		t.Fatal(err)
	}
	return pods, id
}

func ctrConfig(name string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: name}}
}

// awaitSealed returns once the pod refuses admissions.
func awaitSealed(t *testing.T, pods *pod.Manager, id string) {
	for {
		_, done, err := pods.Admit(id)
		if err != nil {
			if !errors.Is(err, errdefs.ErrFailedPrecondition) {
				t.Fatalf("admit while sealing: %v", err)
			}
			return
		}
		done()
	}
}

type created struct {
	id  string
	err error
}

// The race of issue 14: a container admitted before its pod's stop or
// removal began must be seen by that teardown, and none may be made
// after. The container manager's Create blocks in the middle.
func TestTeardownWaitsForAdmittedCreate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		teardown func(*Service, context.Context, string) error
		state    pod.State // "" for removed
		after    error     // what a CreateContainer gets afterwards
	}{
		{"StopPod", (*Service).StopPod, pod.StateNotReady, errdefs.ErrFailedPrecondition},
		{"RemovePod", (*Service).RemovePod, "", errdefs.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pods, podID := newPods(t)
			ctrs := newFakeContainers()
			svc := New(pods, ctrs, nil)
			ctx := context.Background()

			first := make(chan created, 1)
			go func() {
				id, err := svc.CreateContainer(ctx, podID, ctrConfig("first"))
				first <- created{id, err}
			}()
			<-ctrs.entered // admitted, and now inside Create
			torn := make(chan error, 1)
			go func() { torn <- tc.teardown(svc, ctx, podID) }()
			awaitSealed(t, pods, podID)

			// Sealed: a new creation is refused without reaching the
			// container manager, and the teardown waits for the first.
			if _, err := svc.CreateContainer(ctx, podID, ctrConfig("late")); !errors.Is(err, errdefs.ErrFailedPrecondition) {
				t.Fatalf("create after the seal: %v", err)
			}
			if n := ctrs.createCalls(); n != 1 {
				t.Fatalf("%d creations reached the container manager", n)
			}
			if found, ran := ctrs.seen(podID); ran {
				t.Fatalf("the pod's containers were looked for (found %v) while a creation was admitted", found)
			}
			select {
			case err := <-torn:
				t.Fatalf("%s returned (%v) while a creation was admitted", tc.name, err)
			default:
			}

			close(ctrs.release)
			c := <-first
			if c.err != nil {
				t.Fatal(c.err)
			}
			if err := <-torn; err != nil {
				t.Fatal(err)
			}
			if found, _ := ctrs.seen(podID); len(found) != 1 || found[0] != c.id {
				t.Fatalf("%s found %v, want the admitted container %s", tc.name, found, c.id)
			}
			sb, err := pods.Get(podID)
			switch {
			case tc.state == "" && !errors.Is(err, errdefs.ErrNotFound):
				t.Fatalf("pod after %s: %v", tc.name, err)
			case tc.state != "" && (err != nil || sb.State != tc.state):
				t.Fatalf("pod after %s: %v %v", tc.name, sb, err)
			}
			if _, err := svc.CreateContainer(ctx, podID, ctrConfig("after")); !errors.Is(err, tc.after) {
				t.Fatalf("create after %s: %v", tc.name, err)
			}
			if n := ctrs.createCalls(); n != 1 {
				t.Fatalf("%d creations reached the container manager", n)
			}
		})
	}
}

// A teardown whose client gives up while a creation is admitted fails
// without looking for containers; the pod stays sealed, and a retry
// finds the container.
func TestTeardownDeadlineWhileCreating(t *testing.T) {
	pods, podID := newPods(t)
	ctrs := newFakeContainers()
	svc := New(pods, ctrs, nil)
	first := make(chan created, 1)
	go func() {
		id, err := svc.CreateContainer(context.Background(), podID, ctrConfig("first"))
		first <- created{id, err}
	}()
	<-ctrs.entered
	ctx, cancel := context.WithCancel(context.Background())
	torn := make(chan error, 1)
	go func() { torn <- svc.StopPod(ctx, podID) }()
	awaitSealed(t, pods, podID)
	cancel()
	if err := <-torn; !errors.Is(err, context.Canceled) {
		t.Fatalf("stop with its client gone: %v", err)
	}
	if _, ran := ctrs.seen(podID); ran {
		t.Fatal("containers were looked for before the creation ended")
	}
	if _, _, err := pods.Admit(podID); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("the pod took containers after a stop began: %v", err)
	}
	close(ctrs.release)
	c := <-first
	if err := svc.StopPod(context.Background(), podID); err != nil {
		t.Fatal(err)
	}
	if found, _ := ctrs.seen(podID); len(found) != 1 || found[0] != c.id {
		t.Fatalf("retried stop found %v, want %s", found, c.id)
	}
}

// Stopping and removing an unknown pod succeed without touching
// containers.
func TestTeardownUnknownPod(t *testing.T) {
	pods, _ := newPods(t)
	ctrs := newFakeContainers()
	svc := New(pods, ctrs, nil)
	if err := svc.StopPod(context.Background(), "nope"); err != nil {
		t.Fatal(err)
	}
	if err := svc.RemovePod(context.Background(), "nope"); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateContainer(context.Background(), "nope", ctrConfig("x")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("create in an unknown pod: %v", err)
	}
	if len(ctrs.found) != 0 {
		t.Fatalf("containers looked for: %v", ctrs.found)
	}
}

// A client that gives up does not end the admission: the creation goes
// on (a retry gets its container), so a stop that follows must still wait
// for it and then find its container.
func TestTeardownWaitsForAbandonedCreate(t *testing.T) {
	pods, podID := newPods(t)
	ctrs := newFakeContainers()
	svc := New(pods, ctrs, nil)
	cctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := svc.CreateContainer(cctx, podID, ctrConfig("first"))
		first <- err
	}()
	<-ctrs.entered
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned create: %v", err)
	}
	// The admission is still held: a seal that may not wait fails.
	if _, err := pods.Seal(cctx, podID); !errors.Is(err, context.Canceled) {
		t.Fatalf("seal while the abandoned creation runs: %v, want it to wait", err)
	}
	torn := make(chan error, 1)
	go func() { torn <- svc.StopPod(context.Background(), podID) }()
	close(ctrs.release)
	if err := <-torn; err != nil {
		t.Fatal(err)
	}
	if found, _ := ctrs.seen(podID); len(found) != 1 {
		t.Fatalf("StopPod found %v, want the abandoned creation's container", found)
	}
}
