package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// ctrEnv is a berthd with a CNI network, busybox images in a registry
// (pulled) and one ready pod whose logs go to logDir.
type ctrEnv struct {
	d      *testutil.Daemon
	reg    *testutil.Registry
	ref    string // plain busybox, root
	appRef string // USER app, WORKDIR /srv, STOPSIGNAL SIGUSR1 is not settable: see images
	pod    string
	podCfg *runtimeapi.PodSandboxConfig
	logDir string
}

func startCtrEnv(t *testing.T) *ctrEnv {
	t.Helper()
	return startCtrEnvWith(t, testutil.DaemonOptions{BinDir: binDir})
}

// startCtrEnvWith is startCtrEnv with berthd started from opts.
func startCtrEnvWith(t *testing.T, opts testutil.DaemonOptions) *ctrEnv {
	t.Helper()
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	reg.Push(t, "ctr/busybox:1", testutil.BusyboxImage(t, testutil.ImageSpec{}))
	reg.Push(t, "ctr/app:1", testutil.BusyboxImage(t, testutil.ImageSpec{
		User: "app", WorkingDir: "/srv", Env: []string{"FROM_IMAGE=yes", "OVERRIDE=image"},
	}))
	e := &ctrEnv{reg: reg, ref: reg.Ref("ctr/busybox:1"), appRef: reg.Ref("ctr/app:1")}
	e.d = testutil.NewDaemon(t, opts)
	e.d.WriteRegistriesConf(t, reg.RegistriesConf())
	e.d.Start(t)
	tn := newTestNet(t, e.d.Dir)
	t.Cleanup(func() { removeAllPods(e.d) })
	writeConf(t, e.d, "10-test.conflist", tn.conflist("bridge"))
	waitNetworkReady(t, e.d, true)
	for _, r := range []string{e.ref, e.appRef} {
		if _, err := e.d.Images.PullImage(ctxT(t, 2*time.Minute), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: r}}); err != nil {
			t.Fatal(err)
		}
	}
	e.logDir = filepath.Join(e.d.Dir, "podlogs")
	e.podCfg = podConfig("ctr")
	e.podCfg.LogDirectory = e.logDir
	e.pod = runPod(t, e.d, e.podCfg)
	return e
}

func (e *ctrEnv) config(name string, args ...string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: e.ref},
		Command:  args,
		LogPath:  name + ".log",
	}
}

func (e *ctrEnv) create(t *testing.T, cfg *runtimeapi.ContainerConfig) (string, error) {
	t.Helper()
	resp, err := e.d.Runtime.CreateContainer(ctxT(t, time.Minute), &runtimeapi.CreateContainerRequest{
		PodSandboxId: e.pod, SandboxConfig: e.podCfg, Config: cfg,
	})
	return resp.GetContainerId(), err
}

func (e *ctrEnv) mustCreate(t *testing.T, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	id, err := e.create(t, cfg)
	if err != nil {
		t.Fatalf("CreateContainer %s: %v", cfg.GetMetadata().GetName(), err)
	}
	return id
}

func (e *ctrEnv) start(t *testing.T, id string) {
	t.Helper()
	if _, err := e.d.Runtime.StartContainer(ctxT(t, time.Minute), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
}

// run creates and starts a container.
func (e *ctrEnv) run(t *testing.T, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	id := e.mustCreate(t, cfg)
	e.start(t, id)
	return id
}

func (e *ctrEnv) status(t *testing.T, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	resp, err := e.d.Runtime.ContainerStatus(ctxT(t, 10*time.Second), &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("ContainerStatus: %v", err)
	}
	return resp.GetStatus()
}

// waitExited waits for the container to exit and returns its status.
func (e *ctrEnv) waitExited(t *testing.T, id string, within time.Duration) *runtimeapi.ContainerStatus {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := e.status(t, id)
		if st.GetState() == runtimeapi.ContainerState_CONTAINER_EXITED {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s still %v after %v", id, st.GetState(), within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *ctrEnv) stop(t *testing.T, id string, timeout int64) {
	t.Helper()
	if _, err := e.d.Runtime.StopContainer(ctxT(t, time.Minute), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: timeout}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
}

func (e *ctrEnv) remove(t *testing.T, id string) {
	t.Helper()
	if _, err := e.d.Runtime.RemoveContainer(ctxT(t, time.Minute), &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("RemoveContainer: %v", err)
	}
}

func (e *ctrEnv) exec(t *testing.T, id string, timeout int64, cmd ...string) *runtimeapi.ExecSyncResponse {
	t.Helper()
	resp, err := e.d.Runtime.ExecSync(ctxT(t, time.Minute), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: timeout})
	if err != nil {
		t.Fatalf("ExecSync %q: %v", cmd, err)
	}
	return resp
}

// criLogLine is conmon's k8s-file format: local time with a numeric
// offset and nine fractional digits, stream, P or F, the bytes.
var criLogLine = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}[+-]\d\d:\d\d (stdout|stderr) (P|F) (.*)$`)

// logLines reads a CRI log file, checking every line's format, and
// returns "stream tag message" per line.
func logLines(t *testing.T, p string) []string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := criLogLine.FindStringSubmatch(sc.Text())
		if m == nil {
			t.Fatalf("log line %q is not in CRI format", sc.Text())
		}
		ts := strings.SplitN(sc.Text(), " ", 2)[0]
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Fatalf("log timestamp %q: %v", ts, err)
		}
		out = append(out, m[1]+" "+m[2]+" "+m[3])
	}
	return out
}

func TestContainerLifecycle(t *testing.T) {
	e := startCtrEnv(t)
	events, err := e.d.Runtime.GetContainerEvents(ctxT(t, time.Minute), &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.config("life", "sh", "-c", "echo hello; echo to-stderr >&2; printf partial; sleep 0.2; echo; exit 3")
	cfg.Labels = map[string]string{"tier": "test"}
	cfg.Annotations = map[string]string{"note": "kept as is"}
	id := e.mustCreate(t, cfg)
	st := e.status(t, id)
	if st.GetState() != runtimeapi.ContainerState_CONTAINER_CREATED || st.GetCreatedAt() == 0 || st.GetStartedAt() != 0 {
		t.Fatalf("after create: %v", st)
	}
	if st.GetLogPath() != filepath.Join(e.logDir, "life.log") || st.GetImageId() == "" || st.GetAnnotations()["note"] != "kept as is" {
		t.Fatalf("status fields: %v", st)
	}
	e.start(t, id)
	st = e.waitExited(t, id, 10*time.Second)
	if st.GetExitCode() != 3 || st.GetReason() != "Error" || st.GetStartedAt() == 0 || st.GetFinishedAt() < st.GetStartedAt() {
		t.Fatalf("after exit: %v", st)
	}
	// stdout and stderr are separate pipes: order holds within a stream.
	var stdout, stderr []string
	for _, l := range logLines(t, st.GetLogPath()) {
		if strings.HasPrefix(l, "stdout ") {
			stdout = append(stdout, l)
		} else {
			stderr = append(stderr, l)
		}
	}
	if want := []string{"stdout F hello", "stdout P partial", "stdout F "}; fmt.Sprint(stdout) != fmt.Sprint(want) {
		t.Fatalf("stdout log lines %q, want %q", stdout, want)
	}
	if want := []string{"stderr F to-stderr"}; fmt.Sprint(stderr) != fmt.Sprint(want) {
		t.Fatalf("stderr log lines %q, want %q", stderr, want)
	}
	list, err := e.d.Runtime.ListContainers(ctxT(t, 10*time.Second), &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		PodSandboxId: e.pod, LabelSelector: map[string]string{"tier": "test"},
		State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED},
	}})
	if err != nil || len(list.GetContainers()) != 1 || list.GetContainers()[0].GetId() != id {
		t.Fatalf("list: %v %v", list, err)
	}
	// Verbose status carries the pid and the OCI spec.
	vs, err := e.d.Runtime.ContainerStatus(ctxT(t, 10*time.Second), &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil || !strings.Contains(vs.GetInfo()["info"], `"runtimeSpec"`) || !strings.Contains(vs.GetInfo()["info"], `"pid"`) {
		t.Fatalf("verbose status: %v %v", vs.GetInfo(), err)
	}
	e.stop(t, id, 10) // stopping an exited container is fine
	e.remove(t, id)
	e.remove(t, id) // and so is removing twice
	if _, err := e.d.Runtime.ContainerStatus(ctxT(t, 10*time.Second), &runtimeapi.ContainerStatusRequest{ContainerId: id}); status.Code(err) != codes.NotFound {
		t.Fatalf("status after remove: %v", err)
	}
	// Events arrive in lifecycle order.
	var got []runtimeapi.ContainerEventType
	for len(got) < 4 {
		ev, err := events.Recv()
		if err != nil {
			t.Fatalf("events: %v (got %v)", err, got)
		}
		if ev.GetContainerId() == id {
			got = append(got, ev.GetContainerEventType())
		}
	}
	wantEv := []runtimeapi.ContainerEventType{
		runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT,
	}
	if fmt.Sprint(got) != fmt.Sprint(wantEv) {
		t.Fatalf("events %v, want %v", got, wantEv)
	}
	assertNoContainersLeft(t, e)
}

// assertNoContainersLeft checks that berth left no container state:
// records, bundles, runtime state, storage containers.
func assertNoContainersLeft(t *testing.T, e *ctrEnv) {
	t.Helper()
	for _, dir := range []string{"state/containers", "run/containers", "runc"} {
		ents, _ := os.ReadDir(filepath.Join(e.d.Dir, dir))
		var names []string
		for _, en := range ents {
			names = append(names, en.Name())
		}
		sort.Strings(names)
		if len(names) > 0 {
			t.Errorf("%s holds %v", dir, names)
		}
	}
	list, err := e.d.Runtime.ListContainers(context.Background(), &runtimeapi.ListContainersRequest{})
	if err != nil || len(list.GetContainers()) != 0 {
		t.Errorf("containers left: %v %v", list, err)
	}
}

// TestPodEvents: GetContainerEvents also carries the pod lifecycle, with
// the pod's status, as containerd reports it.
func TestPodEvents(t *testing.T) {
	e := startCtrEnv(t)
	events, err := e.d.Runtime.GetContainerEvents(ctxT(t, time.Minute), &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pc := podConfig("evented")
	pc.LogDirectory = filepath.Join(e.d.Dir, "podlogs", "evented")
	id := runPod(t, e.d, pc)
	removePod(t, e.d, id)
	var got []runtimeapi.ContainerEventType
	for len(got) < 4 {
		ev, err := events.Recv()
		if err != nil {
			t.Fatalf("events: %v (got %v)", err, got)
		}
		if ev.GetContainerId() != id {
			continue
		}
		if ev.GetPodSandboxStatus().GetId() != id || ev.GetPodSandboxStatus().GetMetadata().GetName() != "evented" {
			t.Fatalf("pod event without the pod's status: %v", ev)
		}
		got = append(got, ev.GetContainerEventType())
	}
	want := []runtimeapi.ContainerEventType{
		runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pod events %v, want %v", got, want)
	}
}

// TestContainerTargetPIDNamespace: a TARGET PID namespace joins a running
// container of the same pod, and a container of another pod is refused.
func TestContainerTargetPIDNamespace(t *testing.T) {
	e := startCtrEnv(t)
	target := e.run(t, e.config("target", "sleep", "1000"))
	withTarget := func(name string) *runtimeapi.ContainerConfig {
		cfg := e.config(name, "sleep", "1000")
		cfg.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: target},
		}}
		return cfg
	}
	joiner := e.run(t, withTarget("joiner"))
	out := e.exec(t, joiner, 10, "ps", "-o", "args")
	if !strings.Contains(string(out.GetStdout()), "sleep 1000") || strings.Count(string(out.GetStdout()), "sleep 1000") < 2 {
		t.Errorf("the joiner should see the target's processes:\n%s", out.GetStdout())
	}

	pc := podConfig("other-pod")
	pc.LogDirectory = filepath.Join(e.d.Dir, "podlogs", "other")
	other := runPod(t, e.d, pc)
	t.Cleanup(func() { removePod(t, e.d, other) })
	_, err := e.d.Runtime.CreateContainer(ctxT(t, time.Minute), &runtimeapi.CreateContainerRequest{
		PodSandboxId: other, SandboxConfig: pc, Config: withTarget("intruder"),
	})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), target) {
		t.Fatalf("a target in another pod: want InvalidArgument naming it, got %v", err)
	}
	for _, id := range []string{joiner, target} {
		e.stop(t, id, 0)
		e.remove(t, id)
	}
}
