package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// recEnv is a ctrEnv plus the test network, for leak counting.
type recEnv struct {
	*ctrEnv
	tn *testNet
}

func startRecEnv(t *testing.T) *recEnv {
	t.Helper()
	return startRecEnvWith(t, nil, nil)
}

// startRecEnvWith is startRecEnv with drop-in config files, and prepare
// (when not nil) run on the daemon's directory before berthd starts.
func startRecEnvWith(t *testing.T, dropIns map[string]string, prepare func(*testutil.Daemon)) *recEnv {
	t.Helper()
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	reg.Push(t, "ctr/busybox:1", testutil.BusyboxImage(t, testutil.ImageSpec{}))
	e := &ctrEnv{reg: reg, ref: reg.Ref("ctr/busybox:1")}
	e.d = testutil.NewDaemon(t, testutil.DaemonOptions{BinDir: binDir, DropIns: dropIns})
	e.d.WriteRegistriesConf(t, reg.RegistriesConf())
	if prepare != nil {
		prepare(e.d)
	}
	e.d.Start(t)
	tn := newTestNet(t, e.d.Dir)
	t.Cleanup(func() { removeAllPods(e.d) })
	writeConf(t, e.d, "10-test.conflist", tn.conflist("bridge"))
	waitNetworkReady(t, e.d, true)
	if _, err := e.d.Images.PullImage(ctxT(t, 2*time.Minute), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: e.ref}}); err != nil {
		t.Fatal(err)
	}
	e.logDir = filepath.Join(e.d.Dir, "podlogs")
	e.podCfg = podConfig("ctr")
	e.podCfg.LogDirectory = e.logDir
	e.pod = runPod(t, e.d, e.podCfg)
	return &recEnv{ctrEnv: e, tn: tn}
}

// flow is one kubelet-like RunPodSandbox + CreateContainer +
// StartContainer sequence, remembering every answer it got.
type flow struct {
	name           string
	podCfg         *runtimeapi.PodSandboxConfig
	ctrCfg         *runtimeapi.ContainerConfig
	pod, ctr       string
	started        bool
	podErr, ctrErr error
}

func (e *recEnv) newFlow(i int) *flow {
	name := fmt.Sprintf("par%d", i)
	pc := podConfig(name)
	pc.LogDirectory = filepath.Join(e.d.Dir, "podlogs", name)
	cc := e.config("c", "sh", "-c", counterScript)
	return &flow{name: name, podCfg: pc, ctrCfg: cc}
}

// run performs the sequence; a failure (berthd killed) ends it.
func (f *flow) run(ctx context.Context, d *testutil.Daemon) error {
	rt := d.Runtime
	if f.pod == "" {
		r, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: f.podCfg})
		if err != nil {
			return fmt.Errorf("RunPodSandbox: %w", err)
		}
		f.pod = r.GetPodSandboxId()
	}
	if f.ctr == "" {
		r, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: f.pod, Config: f.ctrCfg, SandboxConfig: f.podCfg})
		if err != nil {
			return fmt.Errorf("CreateContainer: %w", err)
		}
		f.ctr = r.GetContainerId()
	}
	if !f.started {
		if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: f.ctr}); err != nil {
			return fmt.Errorf("StartContainer: %w", err)
		}
		f.started = true
	}
	return nil
}

// checkConsistent asserts that what berthd reports matches what exists:
// every pod has its pins and IP, every container its conmon, bundle,
// record and writable layer, and nothing else of either kind exists.
func (e *recEnv) checkConsistent(t *testing.T) {
	t.Helper()
	pods, err := e.d.Runtime.ListPodSandbox(ctxT(t, 10*time.Second), &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ready := 0
	for _, p := range pods.GetItems() {
		if p.GetState() == runtimeapi.PodSandboxState_SANDBOX_READY {
			ready++
		}
	}
	ctrs, err := e.d.Runtime.ListContainers(ctxT(t, 10*time.Second), &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	live := 0
	s := leftovers(t, e.d, e.tn)
	for _, c := range ctrs.GetContainers() {
		if c.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED {
			live++
			if !slices.Contains(s["conmons"], c.GetId()) {
				t.Errorf("container %s is %v but has no conmon", c.GetId(), c.GetState())
			}
		}
	}
	want := map[string]int{
		"run/ns/net": ready, "run/ns/uts": ready, "run/ns/ipc": ready, "ipam": ready, "veths": ready,
		"state/pods": len(pods.GetItems()), "state/containers": len(ctrs.GetContainers()),
		"storage": len(ctrs.GetContainers()), "conmons": live,
	}
	for k, n := range want {
		if len(s[k]) != n {
			t.Errorf("%s: %d, want %d (%q)", k, len(s[k]), n, s[k])
		}
	}
}

// TestRecoveryKillDuringParallelCreate SIGKILLs berthd while 20 flows
// run in parallel, twice, and checks after each restart that everything
// answered exists, nothing half-made is left, retries succeed, and a
// container running across the kills logged without a gap.
func TestRecoveryKillDuringParallelCreate(t *testing.T) {
	e := startRecEnv(t)
	counter := e.run(t, e.config("counter", "sh", "-c", counterScript))
	logPath := e.status(t, counter).GetLogPath()
	flows := make([]*flow, 20)
	for i := range flows {
		flows[i] = e.newFlow(i)
	}
	for round, delay := range []time.Duration{150 * time.Millisecond, 600 * time.Millisecond, 1500 * time.Millisecond} {
		var wg sync.WaitGroup
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		for _, f := range flows {
			wg.Add(1)
			go func() { defer wg.Done(); _ = f.run(ctx, e.d) }()
		}
		time.Sleep(delay)
		e.d.Kill(t)
		wg.Wait()
		cancel()
		done := 0
		for _, f := range flows {
			if f.started {
				done++
			}
		}
		t.Logf("round %d: killed after %v with %d of %d flows complete", round, delay, done, len(flows))
		e.d.Start(t)
		// Every answer given before the kill still holds.
		for _, f := range flows {
			if f.pod != "" {
				if st, _ := podStatus(t, e.d, f.pod); st.GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
					t.Errorf("pod %s answered before the kill is %v", f.name, st.GetState())
				}
			}
			if f.ctr != "" {
				st := e.status(t, f.ctr)
				if f.started && st.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
					t.Errorf("started container of %s is %v", f.name, st.GetState())
				}
			}
		}
		e.checkConsistent(t)
		if st := e.status(t, counter); st.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Fatalf("counter container after kill: %v", st)
		}
	}
	// Retries, as the kubelet would make them, all succeed and give the
	// objects already made.
	for _, f := range flows {
		prevPod, prevCtr := f.pod, f.ctr
		f.pod, f.ctr = "", ""
		err := f.run(ctxT(t, time.Minute), e.d)
		if s, ok := status.FromError(err); ok && s.Code() == codes.FailedPrecondition && f.ctr != "" {
			// Started before the kill, with the answer lost.
			if st := e.status(t, f.ctr); st.GetState() == runtimeapi.ContainerState_CONTAINER_RUNNING {
				err, f.started = nil, true
			}
		}
		if err != nil {
			t.Fatalf("retry of %s: %v", f.name, err)
		}
		if prevPod != "" && prevPod != f.pod || prevCtr != "" && prevCtr != f.ctr {
			t.Errorf("retry of %s gave pod %s container %s, had %s %s", f.name, f.pod, f.ctr, prevPod, prevCtr)
		}
	}
	e.checkConsistent(t)
	time.Sleep(100 * time.Millisecond)
	if n := assertNoGap(t, logPath); n < 20 {
		t.Fatalf("counter logged only %d lines", n)
	}
}

// TestRecoveryStopRemoveAndExits kills berthd during StopContainer and
// during RemovePodSandbox, lets a container exit while berthd is down,
// and kills a conmon; every retry succeeds and statuses are right.
func TestRecoveryStopRemoveAndExits(t *testing.T) {
	e := startRecEnv(t)
	before := leftovers(t, e.d, e.tn)

	// During StopContainer: a container ignoring SIGTERM.
	stubborn := e.run(t, e.config("stubborn", "sh", "-c", "trap '' TERM; while true; do sleep 0.05; done"))
	go e.d.Runtime.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: stubborn, Timeout: 5})
	time.Sleep(300 * time.Millisecond)
	e.d.Kill(t)
	// An exit while berthd is down.
	e.d.Start(t)
	short := e.run(t, e.config("short", "sh", "-c", "sleep 0.3; exit 7"))
	e.d.Kill(t)
	killedAt := time.Now()
	time.Sleep(800 * time.Millisecond)
	e.d.Start(t)
	st := e.status(t, short)
	fin := time.Unix(0, st.GetFinishedAt())
	if st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 7 || st.GetReason() != "Error" {
		t.Errorf("exited while down: %v", st)
	}
	if fin.Before(killedAt) || fin.After(killedAt.Add(700*time.Millisecond)) {
		t.Errorf("finished at %v, killed at %v", fin, killedAt)
	}
	if st := e.status(t, stubborn); st.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("stubborn container after a kill mid-stop: %v", st)
	}
	e.stop(t, stubborn, 1)
	if st := e.status(t, stubborn); st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 137 {
		t.Errorf("retried stop: %v", st)
	}

	// conmon killed under a running container.
	victim := e.run(t, e.config("victim", "sleep", "1000"))
	p := conmonOf(t, e.d, victim)
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := e.status(t, victim)
		if st.GetState() == runtimeapi.ContainerState_CONTAINER_EXITED {
			if st.GetReason() != "ContainerMonitorDied" || st.GetMessage() == "" {
				t.Errorf("after conmon was killed: %v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container still %v after its conmon was killed", st.GetState())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// During RemovePodSandbox of a pod with running containers.
	pc := podConfig("doomed")
	pc.LogDirectory = filepath.Join(e.d.Dir, "podlogs", "doomed")
	doomed := runPod(t, e.d, pc)
	for _, n := range []string{"a", "b"} {
		cfg := e.config(n, "sleep", "1000")
		r, err := e.d.Runtime.CreateContainer(ctxT(t, time.Minute), &runtimeapi.CreateContainerRequest{PodSandboxId: doomed, Config: cfg, SandboxConfig: pc})
		if err != nil {
			t.Fatal(err)
		}
		e.start(t, r.GetContainerId())
	}
	go e.d.Runtime.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: doomed})
	time.Sleep(40 * time.Millisecond)
	e.d.Kill(t)
	e.d.Start(t)
	e.checkConsistent(t)
	removePod(t, e.d, doomed)
	for _, id := range []string{short, stubborn, victim} {
		e.remove(t, id)
	}
	e.checkConsistent(t)
	assertSameHost(t, before, leftovers(t, e.d, e.tn))
}

// TestRecoveryKillDuringPull kills berthd in the middle of an image pull:
// the next start checks storage, and the retried pull succeeds and
// leaves no stray layer.
func TestRecoveryKillDuringPull(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{Handler: testutil.StallBlobs(time.Second)})
	reg.Push(t, "app:1", testutil.BusyboxImage(t, testutil.ImageSpec{}))
	d := startImageDaemon(t, reg.RegistriesConf(), nil)
	ref := reg.Ref("app:1")
	go d.Images.PullImage(context.Background(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	time.Sleep(time.Second)
	d.Kill(t)
	d.Start(t)
	if id := mustPull(t, d, ref); id == "" {
		t.Fatal("no image id")
	}
	assertClean(t, d, 1)
	d.Stop(t)
	d.Start(t)
	if len(listImages(t, d, "")) != 1 {
		t.Fatal("image lost across a clean restart")
	}
}

// TestRecoveryWipe: `berthd wipe` removes pods and containers, leaving
// the host as before and images in place.
func TestRecoveryWipe(t *testing.T) {
	e := startRecEnv(t)
	e.run(t, e.config("w", "sleep", "1000"))
	e.d.Stop(t)
	berthdWipe(t, e.d)
	e.d.Start(t)
	pods, err := e.d.Runtime.ListPodSandbox(ctxT(t, 10*time.Second), &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(pods.GetItems()) != 0 {
		t.Fatalf("pods after wipe: %v %v", pods, err)
	}
	e.checkConsistent(t)
	if len(listImages(t, e.d, "")) == 0 {
		t.Error("wipe removed images")
	}
}
