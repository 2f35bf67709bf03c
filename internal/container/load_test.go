package container

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.podman.io/storage"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/runtime"
	"github.com/berth-cri/berth/internal/store"
)

// left writes what a previous berthd left of container id: its record
// (status.json only if st is set), bundle, log file and mounted layer.
func (e *env) left(id string, st *Status) (recs store.Dir, meta *Meta) {
	e.t.Helper()
	recs, err := store.Open(filepath.Join(e.cfg.Berth.StateDir, "containers"))
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := recs.Create(id); err != nil {
		e.t.Fatal(err)
	}
	meta = &Meta{Version: recordVersion, ID: id, Name: "k8s_" + id + "_p_ns_u1_0", PodID: "pod1", CtrName: id, CreatedAt: time.Now(),
		Bundle: filepath.Join(e.cfg.Berth.RunDir, "containers", id), LogPath: filepath.Join(e.cfg.Berth.LogDir, id+".log"),
		StorageID: id, StopSignal: "SIGTERM"}
	for _, d := range []string{meta.Bundle, filepath.Dir(meta.LogPath)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := os.WriteFile(meta.LogPath, nil, 0o600); err != nil {
		e.t.Fatal(err)
	}
	e.layers.ctrs[id] = storage.Container{ID: id, Metadata: `{"pod-id":"pod1"}`}
	e.layers.mounted[id] = true
	if err := recs.Write(id, metaFile, meta); err != nil {
		e.t.Fatal(err)
	}
	if st != nil {
		st.Version = recordVersion
		if err := recs.WriteVolatile(id, statusFile, st); err != nil {
			e.t.Fatal(err)
		}
	}
	return recs, meta
}

// gone is a process that has exited.
func gone(t *testing.T) runtime.Proc {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p, err := runtime.NewProc(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return p
}

func TestLoad(t *testing.T) {
	e := newEnv(t)
	live := func() Status {
		return Status{State: StateRunning, Conmon: sleeper(t), Init: sleeper(t), StartedAt: time.Now()}
	}
	e.left("running", ptr(live()))
	created := live()
	created.State = StateCreated
	e.left("created", ptr(created))
	e.rt.states["created"] = runtime.State{ID: "created", Status: "created", Pid: created.Init.PID}
	// Started by runc before the crash kept "running" from disk.
	meanwhile := live()
	meanwhile.State = StateCreated
	e.left("meanwhile", ptr(meanwhile))
	e.rt.states["meanwhile"] = runtime.State{ID: "meanwhile", Status: "running", Pid: meanwhile.Init.PID}
	// Exited while no berthd watched: conmon wrote the exit file.
	_, exMeta := e.left("exiteddown", ptr(live()))
	if err := os.WriteFile(filepath.Join(e.cfg.Berth.StateDir, "containers", exMeta.ID, runtime.ExitFile), []byte("7"), 0o600); err != nil {
		t.Fatal(err)
	}
	// conmon died without writing one; the init still runs.
	died := live()
	died.Conmon = gone(t)
	e.left("conmongone", ptr(died))
	e.left("exited", &Status{State: StateExited, ExitCode: 1, Reason: ReasonError, FinishedAt: time.Now()})
	// Torn: both files were cut mid-write; their previous copies hold.
	recs, tornMeta := e.left("torn", ptr(live()))
	if err := recs.Write("torn", metaFile, tornMeta); err != nil {
		t.Fatal(err)
	}
	torn := live()
	if err := recs.WriteVolatile("torn", statusFile, &torn); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{metaFile, statusFile} {
		if err := os.WriteFile(filepath.Join(recs.Path("torn"), f), []byte(`{"id": "to`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// status.json unreadable with no previous copy: rebuilt from conmon
	// and the runtime.
	rebuilt := live()
	recs, _ = e.left("rebuilt", nil)
	if err := os.WriteFile(filepath.Join(recs.Path("rebuilt"), statusFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.rt.conmons["rebuilt"] = rebuilt.Conmon
	e.rt.states["rebuilt"] = runtime.State{ID: "rebuilt", Status: "running", Pid: rebuilt.Init.PID}
	// A creation cut short: container.json only, conmon still there.
	e.left("cutshort", nil)
	cutConmon := sleeper(t)
	e.rt.conmons["cutshort"] = cutConmon
	// A removal cut short.
	removing := live()
	removing.Removing = true
	e.left("removing", &removing)
	// Nothing readable says what it was.
	recs, _ = e.left("nometa", nil)
	if err := os.WriteFile(filepath.Join(recs.Path("nometa"), metaFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}

	m := e.start(false)
	want := LoadReport{Running: 4, Created: 1, Exited: 1, ExitedWhileDown: 2, Completed: 1, Discarded: 3, FromPrev: 2}
	if got := m.Loaded(); got != want {
		t.Errorf("load report %+v, want %+v", got, want)
	}
	for id, want := range map[string]runtimeapi.ContainerState{
		"running": runtimeapi.ContainerState_CONTAINER_RUNNING, "created": runtimeapi.ContainerState_CONTAINER_CREATED,
		"meanwhile": runtimeapi.ContainerState_CONTAINER_RUNNING, "torn": runtimeapi.ContainerState_CONTAINER_RUNNING,
		"rebuilt": runtimeapi.ContainerState_CONTAINER_RUNNING, "exited": runtimeapi.ContainerState_CONTAINER_EXITED,
	} {
		if st := e.status(id); st.GetState() != want {
			t.Errorf("%s: %v, want %v", id, st.GetState(), want)
		}
	}
	if d := e.diskStatus("meanwhile"); d.State != StateRunning {
		t.Errorf("a start found at load was not written: %+v", d)
	}
	if st := e.status("exiteddown"); st.GetExitCode() != 7 || st.GetReason() != ReasonError {
		t.Errorf("exited while down: %v", st)
	}
	if st := e.status("conmongone"); st.GetReason() != ReasonConmonDied || st.GetExitCode() != 137 {
		t.Errorf("conmon gone: %v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := died.Init.WaitExit(ctx); err != nil {
		t.Errorf("the init of a container whose conmon died was not killed: %v", err)
	}
	if err := cutConmon.WaitExit(ctx); err != nil {
		t.Errorf("the conmon of a creation cut short was not killed: %v", err)
	}
	for _, id := range []string{"cutshort", "removing", "nometa"} {
		if _, err := os.Stat(m.records.Path(id)); !os.IsNotExist(err) {
			t.Errorf("%s: record left: %v", id, err)
		}
		if _, err := os.Stat(filepath.Join(e.cfg.Berth.RunDir, "containers", id)); !os.IsNotExist(err) {
			t.Errorf("%s: bundle left: %v", id, err)
		}
		if _, ok := e.layers.ctrs[id]; ok {
			t.Errorf("%s: layer left", id)
		}
		if !e.rt.deleted[id] {
			t.Errorf("%s: runtime state not deleted", id)
		}
	}
	// Only a creation that never answered takes its log with it.
	if _, err := os.Stat(filepath.Join(e.cfg.Berth.LogDir, "cutshort.log")); !os.IsNotExist(err) {
		t.Errorf("log of a creation cut short: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.cfg.Berth.LogDir, "removing.log")); err != nil {
		t.Errorf("log of a removed container: %v", err)
	}

	// The retry of a create whose answer the crash lost gets the container.
	if id, _, err := m.Create(context.Background(), e.sandbox(), ctrConfig("created", "sleep", "60")); err != nil || id != "created" {
		t.Errorf("retried create: %q %v", id, err)
	}
	// Loaded containers' exits are routed to the manager: conmon writes
	// the exit file, then the exit dir's notification.
	if err := os.WriteFile(filepath.Join(m.records.Path("running"), runtime.ExitFile), []byte("0"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.rt.exitDir, "running"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e.await("running", evStopped)
	if st := e.status("running"); st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetReason() != ReasonCompleted {
		t.Errorf("exit after load: %v", st)
	}
}

func TestLoadAfterReboot(t *testing.T) {
	e := newEnv(t)
	e.left("running", &Status{State: StateRunning, Conmon: gone(t), Init: gone(t)})
	e.left("creating", &Status{State: StateCreating})
	e.left("exited", &Status{State: StateExited, ExitCode: 2, Reason: ReasonError})
	m := e.start(true)
	if got, want := m.Loaded(), (LoadReport{Exited: 2, ExitedWhileDown: 1, Discarded: 1}); got != want {
		t.Errorf("load report %+v, want %+v", got, want)
	}
	st := e.status("running")
	if st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetReason() != ReasonRebooted || st.GetExitCode() != 255 {
		t.Errorf("running at reboot: %v", st)
	}
	if d := e.diskStatus("running"); d.State != StateExited || d.Reason != ReasonRebooted {
		t.Errorf("status.json after reboot: %+v", d)
	}
	if st := e.status("exited"); st.GetExitCode() != 2 {
		t.Errorf("exited before the reboot: %v", st)
	}
	if _, err := os.Stat(m.records.Path("creating")); !os.IsNotExist(err) {
		t.Errorf("record of a creation cut short by the reboot: %v", err)
	}
}

// A container that survives a restart can be stopped and removed by the
// new manager.
func TestRestartKeepsContainers(t *testing.T) {
	e := newEnv(t)
	m := e.start(false)
	id := e.create("web", "sleep", "60")
	if err := m.Start(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	m = e.restart()
	if got := m.Loaded(); got.Running != 1 {
		t.Fatalf("reloaded: %+v", got)
	}
	if err := m.Stop(context.Background(), id, 10); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	e.assertNothingLeft()
}

func ptr[T any](v T) *T { return &v }
