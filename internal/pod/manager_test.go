package pod

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

const (
	evCreated = runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT
	evStarted = runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT
	evStopped = runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT
	evDeleted = runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT
)

// stop and remove are what lifecycle runs, without containers.
func (e *env) stop(id string) error {
	if _, err := e.m.Seal(context.Background(), id); err != nil {
		return err
	}
	return e.m.Stop(context.Background(), id)
}

func (e *env) remove(id string) error {
	if _, err := e.m.Seal(context.Background(), id); err != nil {
		return err
	}
	return e.m.Remove(context.Background(), id)
}

func TestRunStopRemove(t *testing.T) {
	e := newEnv(t)
	m := e.start()
	id := e.run("web")
	e.await(id, evCreated)
	e.await(id, evStarted)
	sb := e.get(id)
	if sb.State != StateReady || sb.NetNS != e.ns.Path("net", id) || sb.UTSNS != e.ns.Path("uts", id) || sb.IPCNS != "" {
		t.Fatalf("ready pod %+v", sb)
	}
	ho, _ := e.holders.holder(id)
	if ho == nil || sb.HolderPID != ho.Process.Pid || sb.PIDNS != fmt.Sprintf("/proc/%d/ns/pid", ho.Process.Pid) {
		t.Fatalf("PID namespace holder: %+v", sb)
	}
	if len(sb.IPs) != 1 || sb.Network != "fakenet" || !e.net.isAttached(id) {
		t.Fatalf("network %v %q", sb.IPs, sb.Network)
	}
	if e.diskState(id) != StateReady {
		t.Fatal("ready reported before it was written")
	}
	if req := e.ns.reqs[0]; !req.Net || !req.UTS || req.IPC || req.Hostname != "web" {
		t.Fatalf("pin request %+v", req)
	}
	if data, err := os.ReadFile(sb.HostnamePath); err != nil || string(data) != "web\n" {
		t.Fatalf("hostname file %q %v", data, err)
	}
	if data, err := os.ReadFile(sb.HostsPath); err != nil || !strings.Contains(string(data), "10.88.0.2") {
		t.Fatalf("hosts file %q %v", data, err)
	}
	if _, err := os.Stat(sb.ResolvConfPath); err != nil {
		t.Fatal(err)
	}
	if l := m.List(Filter{State: StateReady}); len(l) != 1 || l[0].ID != id {
		t.Fatalf("list ready: %v", l)
	}

	if err := e.stop(id); err != nil {
		t.Fatal(err)
	}
	e.await(id, evStopped)
	sb = e.get(id)
	if sb.State != StateNotReady || sb.NetNS != "" || sb.PIDNS != "" || sb.Network != "" {
		t.Fatalf("stopped pod %+v", sb)
	}
	if e.diskState(id) != StateNotReady || e.ns.count() != 0 || e.net.isAttached(id) || len(e.holders.running()) != 0 {
		t.Fatalf("stop left: state %s, %d pins, attached %v, holders %v", e.diskState(id), e.ns.count(), e.net.isAttached(id), e.holders.running())
	}
	if _, _, err := m.Admit(id); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("admit into a stopped pod: %v", err)
	}
	// Idempotent: nothing is torn down twice, nothing announced twice.
	if err := e.stop(id); err != nil {
		t.Fatal(err)
	}
	if e.net.teardowns != 1 {
		t.Fatalf("%d CNI DELs", e.net.teardowns)
	}

	if err := e.remove(id); err != nil {
		t.Fatal(err)
	}
	e.await(id, evDeleted)
	for _, ev := range drain(e) {
		if ev == evStopped {
			t.Fatal("a second stop was announced")
		}
	}
	if _, err := m.Get(id); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("get after remove: %v", err)
	}
	e.assertNothingLeft()
	if err := e.remove(id); err != nil {
		t.Fatalf("removing a removed pod: %v", err)
	}
	if err := e.stop(id); err != nil {
		t.Fatalf("stopping a removed pod: %v", err)
	}
	// The name is free: the same metadata makes a new pod.
	if id2 := e.run("web"); id2 == id {
		t.Fatal("a removed pod's id came back")
	}
}

// drain returns the event types waiting.
func drain(e *env) []runtimeapi.ContainerEventType {
	var out []runtimeapi.ContainerEventType
	for {
		select {
		case ev := <-e.sub.C:
			out = append(out, ev.ContainerEventType)
		default:
			return out
		}
	}
}

// assertNothingLeft checks that no pod has anything left: record, run
// dir, pin, attachment or holder.
func (e *env) assertNothingLeft() {
	e.t.Helper()
	if ents := entries(e.t, filepath.Join(e.cfg.Berth.StateDir, "pods")); len(ents) != 0 {
		e.t.Errorf("records left: %v", ents)
	}
	if ents := entries(e.t, filepath.Join(e.cfg.Berth.RunDir, "pods")); len(ents) != 0 {
		e.t.Errorf("run dirs left: %v", ents)
	}
	if n := e.ns.count(); n != 0 {
		e.t.Errorf("%d pins left", n)
	}
	if len(e.net.attached) != 0 {
		e.t.Errorf("attachments left: %v", e.net.attached)
	}
	if ids := e.holders.running(); len(ids) != 0 {
		e.t.Errorf("holders left: %v", ids)
	}
	if l := e.m.List(Filter{}); len(l) != 0 {
		e.t.Errorf("listed: %v", l)
	}
}

func TestRunRetryGetsSamePod(t *testing.T) {
	e := newEnv(t)
	e.start()
	if a, b := e.run("web"), e.run("web"); a != b {
		t.Fatalf("retry made a second pod: %s %s", a, b)
	}
	if l := e.m.List(Filter{}); len(l) != 1 {
		t.Fatalf("%d pods", len(l))
	}
}

func TestRunFailureLeavesNothing(t *testing.T) {
	for _, step := range []string{"pin", "network", "holder-create", "holder-start"} {
		t.Run(step, func(t *testing.T) {
			e := newEnv(t)
			m := e.start()
			switch step {
			case "pin":
				e.ns.fail = true
			case "network":
				e.net.fail = true
			case "holder-create":
				e.holders.fail["create"] = true
			case "holder-start":
				e.holders.fail["start"] = true
			}
			if _, err := m.Run(context.Background(), podConfig("web"), ""); err == nil {
				t.Fatal("run succeeded")
			}
			e.assertNothingLeft()
			e.ns.fail, e.net.fail = false, false
			clear(e.holders.fail)
			e.run("web")
		})
	}
}

func TestHolderExitMakesPodNotReady(t *testing.T) {
	e := newEnv(t)
	e.start()
	id := e.run("web")
	ho, _ := e.holders.holder(id)
	// The holder was PID 1 of the pod's PID namespace.
	if err := ho.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	e.await(id, evStopped)
	if sb := e.get(id); sb.State != StateNotReady {
		t.Fatalf("pod with a dead holder is %s", sb.State)
	}
	if e.diskState(id) != StateNotReady {
		t.Fatal("not ready was not written")
	}
	// The kubelet then stops the pod: its network is released.
	if err := e.stop(id); err != nil {
		t.Fatal(err)
	}
	if e.net.isAttached(id) || e.ns.count() != 0 {
		t.Fatal("stop after the holder died left the network or pins")
	}
}

func TestSealWaitsForAdmissions(t *testing.T) {
	e := newEnv(t)
	m := e.start()
	id := e.run("web")
	sb, done, err := m.Admit(id[:8])
	if err != nil || sb.ID != id {
		t.Fatalf("admit: %v", err)
	}
	sealed := make(chan error, 1)
	go func() {
		_, err := m.Seal(context.Background(), id)
		sealed <- err
	}()
	// Sealing refuses new admissions at once, then waits for the one
	// under way.
	for {
		_, d, err := m.Admit(id)
		if err != nil {
			if !errors.Is(err, errdefs.ErrFailedPrecondition) {
				t.Fatal(err)
			}
			break
		}
		d()
	}
	select {
	case <-sealed:
		t.Fatal("seal returned while a creation was admitted")
	default:
	}
	done()
	if err := <-sealed; err != nil {
		t.Fatal(err)
	}
	// A seal whose wait is cut short says so.
	other := e.run("other")
	_, done2, _ := m.Admit(other)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Seal(ctx, other); !errors.Is(err, context.Canceled) {
		t.Fatalf("seal with a cancelled context: %v", err)
	}
	done2()
	if id, err := m.Seal(context.Background(), "unknown"); id != "" || err != nil {
		t.Fatalf("seal of an unknown pod: %q %v", id, err)
	}
}
