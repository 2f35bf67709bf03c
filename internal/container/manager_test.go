package container

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

const (
	evCreated = runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT
	evStarted = runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT
	evStopped = runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT
	evDeleted = runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT
)

// diskStatus reads status.json as the next berthd would.
func (e *env) diskStatus(id string) Status {
	e.t.Helper()
	var st Status
	if err := e.m.records.Read(id, statusFile, &st); err != nil {
		e.t.Fatal(err)
	}
	return st
}

func TestCreateStartStopRemove(t *testing.T) {
	e := newEnv(t)
	m := e.start(false)
	ctx := context.Background()
	id := e.create("web", "sleep", "60")
	e.await(id, evCreated)
	if st := e.status(id); st.GetState() != runtimeapi.ContainerState_CONTAINER_CREATED || st.GetImage().GetImage() != "localhost/fake:latest" {
		t.Fatalf("after create: %v", st)
	}
	if d := e.diskStatus(id); d.State != StateCreated || !d.Conmon.Alive() || !d.Init.Alive() {
		t.Fatalf("status.json after create: %+v", d)
	}
	if n, mounted := e.layers.count(); n != 1 || mounted != 1 {
		t.Fatalf("layers %d mounted %d", n, mounted)
	}
	logPath := filepath.Join(e.sandbox().LogDirectory, "web.log")
	if st := e.status(id); st.GetLogPath() != logPath {
		t.Fatalf("log path %q", st.GetLogPath())
	}

	if err := m.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	e.await(id, evStarted)
	if st := e.status(id); st.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING || st.GetStartedAt() == 0 {
		t.Fatalf("after start: %v", st)
	}
	if d := e.diskStatus(id); d.State != StateRunning {
		t.Fatalf("running reported before it was written: %+v", d)
	}
	if err := m.Start(ctx, id); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("second start: %v", err)
	}
	res, err := m.ExecSync(ctx, id, []string{"echo", "hi"}, 0)
	if err != nil || string(res.Stdout) != "[echo hi]" {
		t.Fatalf("exec: %v %v", res, err)
	}
	if err := m.UpdateResources(ctx, id, &runtimeapi.LinuxContainerResources{CpuShares: 512}); err != nil || e.rt.updates != 1 {
		t.Fatalf("update: %v (%d calls)", err, e.rt.updates)
	}
	if st := e.status(id); st.GetResources().GetLinux().GetCpuShares() != 512 {
		t.Fatalf("resources not kept: %v", st.GetResources())
	}

	// sleep ends on SIGTERM, the default stop signal: 128+15.
	if err := m.Stop(ctx, id, 30); err != nil {
		t.Fatal(err)
	}
	st := e.status(id)
	if st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 143 || st.GetReason() != ReasonError || st.GetFinishedAt() == 0 {
		t.Fatalf("after stop: %v", st)
	}
	if err := m.Stop(ctx, id, 30); err != nil {
		t.Fatalf("stopping a stopped container: %v", err)
	}
	e.await(id, evStopped)
	if ents := entries(t, e.rt.exitDir); len(ents) != 0 {
		t.Fatalf("exit notifications left: %v", ents)
	}

	if err := m.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	e.await(id, evDeleted)
	if _, _, err := m.Status(ctx, id, false); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("status after remove: %v", err)
	}
	e.assertNothingLeft()
	if _, err := os.Stat(logPath); err != nil {
		t.Fatalf("the log of a removed container belongs to the kubelet: %v", err)
	}
	if err := m.Remove(ctx, id); err != nil {
		t.Fatalf("removing a removed container: %v", err)
	}
	// The name is free again.
	e.create("web", "sleep", "60")
}

// assertNothingLeft checks that no container has anything left: record,
// bundle, layer or process.
func (e *env) assertNothingLeft() {
	e.t.Helper()
	if ents := entries(e.t, filepath.Join(e.cfg.Berth.StateDir, "containers")); len(ents) != 0 {
		e.t.Errorf("records left: %v", ents)
	}
	if ents := entries(e.t, filepath.Join(e.cfg.Berth.RunDir, "containers")); len(ents) != 0 {
		e.t.Errorf("bundles left: %v", ents)
	}
	if n, mounted := e.layers.count(); n != 0 || mounted != 0 {
		e.t.Errorf("layers left: %d (%d mounted)", n, mounted)
	}
	if ids := e.rt.running(); len(ids) != 0 {
		e.t.Errorf("processes left: %v", ids)
	}
	if l := e.m.List(nil); len(l) != 0 {
		e.t.Errorf("listed: %v", l)
	}
}

func TestCreateFailureLeavesNothing(t *testing.T) {
	for _, step := range []string{"resolve", "prepare", "create-layer", "mount", "pid-target", "conmon-start", "status-write"} {
		t.Run(step, func(t *testing.T) {
			e := newEnv(t)
			m := e.start(false)
			cfg := ctrConfig("web", "sleep", "60")
			switch step {
			case "resolve":
				e.images.fail = true
			case "create-layer", "mount":
				e.layers.fail[step] = true
			case "pid-target":
				// The spec step: a PID namespace target that does not exist.
				cfg.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "nope"}
			default:
				e.rt.fail[step] = true
			}
			if _, _, err := m.Create(context.Background(), e.sandbox(), cfg); err == nil {
				t.Fatal("create succeeded")
			}
			e.assertNothingLeft()
			for id := range e.rt.prepared {
				if !e.rt.aborted[id] && !e.rt.deleted[id] {
					t.Errorf("conmon of %s neither aborted nor its container deleted", id)
				}
				if step != "conmon-start" && step != "status-write" && !e.rt.aborted[id] {
					t.Errorf("conmon of %s was not aborted", id)
				}
			}
			if _, err := os.Stat(filepath.Join(e.sandbox().LogDirectory, "web.log")); err == nil {
				t.Error("the log file of a failed creation is left")
			}
			// The name was released: the same request now succeeds.
			clear(e.rt.fail)
			clear(e.layers.fail)
			e.images.fail = false
			e.create("web", "sleep", "60")
		})
	}
}

// fifos makes named pipes in a temp dir: a shell writing to one waits
// for the test to read it, so no test depends on timing.
func fifos(t *testing.T, names ...string) []string {
	dir := t.TempDir()
	var out []string
	for _, n := range names {
		p := filepath.Join(dir, n)
		if err := unix.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func TestStopKillsAtTimeout(t *testing.T) {
	e := newEnv(t)
	m := e.start(false)
	ctx := context.Background()
	ready := fifos(t, "ready")[0]
	// SIGTERM stays ignored across the exec: only SIGKILL ends it.
	id := e.create("stubborn", "sh", "-c", `trap "" TERM; echo > `+ready+`; exec sleep 60`)
	if err := m.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(ready); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(ctx, id, 1); err != nil {
		t.Fatal(err)
	}
	if st := e.status(id); st.GetExitCode() != 137 || st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Fatalf("not killed: %v", st)
	}
	if err := m.Stop(ctx, id, 1); err != nil {
		t.Fatal(err)
	}
}

// The stop signal goes first; a second stop with a shorter timeout
// brings the first one's SIGKILL forward.
func TestStopSignalsThenKills(t *testing.T) {
	e := newEnv(t)
	m := e.start(false)
	ctx := context.Background()
	p := fifos(t, "ready", "term")
	ready, term := p[0], p[1]
	// The process reports SIGTERM and goes on.
	id := e.create("stubborn", "sh", "-c", `trap 'echo term > `+term+`' TERM; echo > `+ready+`; while :; do sleep 0.05; done`)
	if err := m.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(ready); err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() { first <- m.Stop(ctx, id, 3600) }()
	if data, err := os.ReadFile(term); err != nil || strings.TrimSpace(string(data)) != "term" {
		t.Fatalf("SIGTERM: %q %v", data, err)
	}
	if st := e.status(id); st.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("killed before its timeout: %v", st)
	}
	if err := m.Stop(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if st := e.status(id); st.GetExitCode() != 137 || st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Fatalf("not killed: %v", st)
	}
}

func TestStopCreatedKillsAtOnce(t *testing.T) {
	e := newEnv(t)
	m := e.start(false)
	id := e.create("idle", "sleep", "60")
	if err := m.Stop(context.Background(), id, 60); err != nil {
		t.Fatal(err)
	}
	if st := e.status(id); st.GetExitCode() != 137 {
		t.Fatalf("created container not killed: %v", st)
	}
	if err := m.Start(context.Background(), id); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("start of a stopped container: %v", err)
	}
}

func TestExitFile(t *testing.T) {
	e := newEnv(t)
	m := e.start(false)
	for _, tc := range []struct {
		args   []string
		code   int32
		reason string
	}{
		{[]string{"sh", "-c", "exit 3"}, 3, ReasonError},
		{[]string{"true"}, 0, ReasonCompleted},
	} {
		id := e.create("job"+tc.args[0], tc.args...)
		if err := m.Start(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		e.await(id, evStopped)
		st := e.status(id)
		if st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetExitCode() != tc.code || st.GetReason() != tc.reason {
			t.Errorf("%v: %v", tc.args, st)
		}
		if d := e.diskStatus(id); d.State != StateExited || d.ExitCode != tc.code {
			t.Errorf("%v: status.json %+v", tc.args, d)
		}
	}
	if ents := entries(t, e.rt.exitDir); len(ents) != 0 {
		t.Fatalf("exit notifications left: %v", ents)
	}
}

func TestConmonDied(t *testing.T) {
	e := newEnv(t)
	m := e.start(false)
	id := e.create("web", "sleep", "60")
	if err := m.Start(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	init, fc := e.diskStatus(id).Init, e.rt.ctr(id)
	e.rt.killConmon(id)
	// Every status read checks conmon.
	st := e.status(id)
	if st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetReason() != ReasonConmonDied || st.GetExitCode() != 137 {
		t.Fatalf("after conmon died: %v", st)
	}
	<-fc.exited
	if init.Alive() {
		t.Fatal("the container outlived its conmon")
	}
	if err := m.Remove(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	e.assertNothingLeft()
}

func TestStartFailedStatusWriteRollsBack(t *testing.T) {
	e := newEnv(t)
	m := e.start(false)
	id := e.create("web", "sleep", "60")
	// rename(2) cannot replace a directory with a file (and root ignores
	// a read-only record dir): the next status write fails.
	p := filepath.Join(m.records.Path(id), statusFile)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(p, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background(), id); err == nil {
		t.Fatal("start succeeded without writing its status")
	}
	// The init is killed: the container ends exited, never running.
	e.await(id, evStopped)
	if st := e.status(id); st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetStartedAt() != 0 {
		t.Fatalf("after a failed start: %v", st)
	}
	for {
		select {
		case ev := <-e.sub.C:
			if ev.ContainerEventType == evStarted {
				t.Fatal("a start that failed was announced")
			}
			continue
		default:
		}
		break
	}
}

func TestStartFailureEndsContainer(t *testing.T) {
	e := newEnv(t)
	m := e.start(false)
	id := e.create("web", "sleep", "60")
	e.rt.fail["runtime-start"] = true
	if err := m.Start(context.Background(), id); err == nil {
		t.Fatal("start succeeded")
	}
	e.await(id, evStopped)
	if st := e.status(id); st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 137 {
		t.Fatalf("after a failed start: %v", st)
	}
	if err := m.Remove(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	e.assertNothingLeft()
}

func TestStatusVerboseAndList(t *testing.T) {
	e := newEnv(t)
	m := e.start(false)
	a := e.create("a", "sleep", "60")
	b := e.create("b", "sleep", "60")
	if err := m.Start(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	st, info, err := m.Status(context.Background(), a, true)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Pid    int    `json:"pid"`
		Bundle string `json:"bundle"`
		Spec   *struct {
			Process struct{ Args []string } `json:"process"`
		} `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(info["info"]), &doc); err != nil || doc.Pid != e.diskStatus(a).Init.PID ||
		doc.Bundle != filepath.Join(e.cfg.Berth.RunDir, "containers", a) || doc.Spec == nil || strings.Join(doc.Spec.Process.Args, " ") != "sleep 60" {
		t.Fatalf("verbose info %s: %v", info["info"], err)
	}
	if st.GetId() != a {
		t.Fatal(st)
	}
	running := &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}
	if l := m.List(running); len(l) != 1 || l[0].GetId() != a {
		t.Fatalf("running: %v", l)
	}
	if l := m.List(&runtimeapi.ContainerFilter{PodSandboxId: "pod1"}); len(l) != 2 || l[0].GetId() != a || l[1].GetId() != b {
		t.Fatalf("by pod, oldest first: %v", l)
	}
	if s := m.PodStatuses("pod1"); len(s) != 2 {
		t.Fatalf("pod statuses: %v", s)
	}
}

// container.json names everything a later berthd needs.
func TestCreateWritesRecords(t *testing.T) {
	e := newEnv(t)
	e.start(false)
	id := e.create("web", "sleep", "60")
	var meta Meta
	if err := e.m.records.Read(id, metaFile, &meta); err != nil {
		t.Fatal(err)
	}
	if meta.PodID != "pod1" || meta.StorageID != id || meta.Image.ID != "0123abcd" || meta.Name != "k8s_web_p_ns_u1_0" || meta.StopSignal != "SIGTERM" {
		t.Fatalf("container.json %+v", meta)
	}
}
