package pod

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-cri/berth/internal/nsmgr"
)

// rewrite changes the status.json of pod id behind the manager's back.
func (e *env) rewrite(id string, f func(*status)) {
	e.t.Helper()
	var st status
	if err := e.m.store.Read(id, "status.json", &st); err != nil {
		e.t.Fatal(err)
	}
	f(&st)
	if err := e.m.store.Write(id, "status.json", &st); err != nil {
		e.t.Fatal(err)
	}
}

func TestRecover(t *testing.T) {
	e := newEnv(t)
	e.start()
	ready := e.run("ready")
	noPins := e.run("nopins")
	noHolder := e.run("noholder")
	stopCut := e.run("stopcut")
	creating := e.run("creating")
	noRecord := e.run("norecord")
	torn := e.run("torn")
	// Pins gone behind berth's back (a reboot, or an unmount).
	if err := e.ns.Unpin(nsmgr.Paths{Net: e.ns.Path(nsmgr.Net, noPins), UTS: e.ns.Path(nsmgr.UTS, noPins)}); err != nil {
		t.Fatal(err)
	}
	// A stop cut short: not ready on disk, network and holder still named.
	e.rewrite(stopCut, func(s *status) { s.State = StateNotReady })
	// A creation cut short: the status never got past creating.
	e.rewrite(creating, func(s *status) { s.State = StateCreating })
	if err := os.WriteFile(filepath.Join(e.m.store.Path(noRecord), "pod.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Torn: status.json cut mid-write; its previous copy holds.
	e.rewrite(torn, func(*status) {})
	if err := os.WriteFile(filepath.Join(e.m.store.Path(torn), "status.json"), []byte(`{"state": "re`), 0o600); err != nil {
		t.Fatal(err)
	}
	down := e.m
	down.Close()
	// The holder dies while no berthd watches: its notice reaches only
	// the manager that is gone.
	ho, exited := e.holders.holder(noHolder)
	_ = ho.Process.Kill()
	<-exited
	<-down.exits.C
	m := e.start()

	rep := m.Recover(context.Background(), false)
	if want := (RecoverReport{Ready: 2, NotReady: 1, Lost: 2, Discarded: 2, FromPrev: 1}); rep != want {
		t.Errorf("recover report %+v, want %+v", rep, want)
	}
	for id, want := range map[string]State{ready: StateReady, torn: StateReady, noPins: StateNotReady, noHolder: StateNotReady, stopCut: StateNotReady} {
		if sb := e.get(id); sb.State != want {
			t.Errorf("%s: %s, want %s", id, sb.State, want)
		}
	}
	// Lost pods and the stop cut short are released; the rest is gone.
	for _, id := range []string{noPins, noHolder, stopCut, creating} {
		if e.net.isAttached(id) {
			t.Errorf("%s: still attached", id)
		}
		if e.ns.IsPinned(e.ns.Path(nsmgr.Net, id)) {
			t.Errorf("%s: still pinned", id)
		}
		if h, done := e.holders.holder(id); h != nil {
			select {
			case <-done:
			default:
				t.Errorf("%s: holder still runs", id)
			}
		}
	}
	for _, id := range []string{noPins, noHolder, stopCut} {
		if e.diskState(id) != StateNotReady {
			t.Errorf("%s: not ready was not written", id)
		}
	}
	for _, id := range []string{creating, noRecord} {
		if _, err := os.Stat(e.m.store.Path(id)); !os.IsNotExist(err) {
			t.Errorf("%s: record left: %v", id, err)
		}
	}
	if _, err := os.Stat(filepath.Join(e.cfg.Berth.RunDir, "pods", creating)); !os.IsNotExist(err) {
		t.Errorf("run dir of a creation cut short: %v", err)
	}
	// A retried RunPodSandbox of the creation cut short makes a new pod.
	if id := e.run("creating"); id == creating {
		t.Error("the pod cut short came back")
	}
	// A retry of a loaded pod's RunPodSandbox gets it.
	if id := e.run("ready"); id != ready {
		t.Errorf("retry after restart: %s, want %s", id, ready)
	}
	// Loaded holders' exits are still routed to the manager.
	ho, _ = e.holders.holder(ready)
	_ = ho.Process.Kill()
	e.await(ready, evStopped)
	if sb := e.get(ready); sb.State != StateNotReady {
		t.Errorf("holder exit after a restart: %s", sb.State)
	}
}

func TestRecoverAfterReboot(t *testing.T) {
	e := newEnv(t)
	e.start()
	id := e.run("web")
	stopped := e.run("stopped")
	if err := e.stop(stopped); err != nil {
		t.Fatal(err)
	}
	m := e.restart()
	if rep := m.Recover(context.Background(), true); rep.Lost != 1 || rep.NotReady != 1 || rep.Ready != 0 {
		t.Fatalf("recover after reboot %+v", rep)
	}
	if sb := e.get(id); sb.State != StateNotReady || e.net.isAttached(id) {
		t.Fatalf("pod after reboot: %s, attached %v", sb.State, e.net.isAttached(id))
	}
	if err := e.remove(id); err != nil {
		t.Fatal(err)
	}
	if err := e.remove(stopped); err != nil {
		t.Fatal(err)
	}
	e.assertNothingLeft()
}

func TestSweep(t *testing.T) {
	e := newEnv(t)
	m := e.start()
	id := e.run("web")
	// Left by a pod berth has no record of.
	stray := strings.Repeat("ab", 32)
	if _, err := e.ns.Pin(context.Background(), nsmgr.Request{ID: stray, Net: true}); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(e.cfg.Berth.RunDir, "pods", stray), 0o700); err != nil {
		t.Fatal(err)
	}
	e.net.attached[stray] = true
	cache := filepath.Join(e.cfg.Berth.StateDir, "cni", "results")
	if err := os.MkdirAll(cache, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{stray, id} {
		if err := os.WriteFile(filepath.Join(cache, "fakenet-"+p+"-eth0"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if rep := m.Sweep(context.Background()); rep != (SweepReport{NSPins: 1, RunDirs: 1, CNI: 1}) {
		t.Fatalf("sweep %+v", rep)
	}
	if e.net.isAttached(stray) || e.ns.IsPinned(e.ns.Path(nsmgr.Net, stray)) {
		t.Fatal("the stray pod's network or pin is left")
	}
	if !e.net.isAttached(id) || !e.ns.IsPinned(e.ns.Path(nsmgr.Net, id)) || e.get(id).State != StateReady {
		t.Fatal("the sweep touched a recorded pod")
	}
}
