package pod

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/nsmgr"
	"github.com/berth-cri/berth/internal/runtime"
	"github.com/berth-cri/berth/internal/testutil"
)

var errInjected = errors.New("injected failure")

// fakeNS pins namespaces as plain files under root.
type fakeNS struct {
	root string
	fail bool

	mu     sync.Mutex
	pinned map[string]bool
	reqs   []nsmgr.Request
}

func (n *fakeNS) Path(kind, id string) string { return filepath.Join(n.root, kind, id) }

func (n *fakeNS) Pin(_ context.Context, req nsmgr.Request) (nsmgr.Paths, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fail {
		return nsmgr.Paths{}, fmt.Errorf("pin namespaces: %w", errInjected)
	}
	n.reqs = append(n.reqs, req)
	var p nsmgr.Paths
	for kind, dst := range map[string]*string{nsmgr.Net: &p.Net, nsmgr.IPC: &p.IPC, nsmgr.UTS: &p.UTS} {
		if (kind == nsmgr.Net && req.Net) || (kind == nsmgr.IPC && req.IPC) || (kind == nsmgr.UTS && req.UTS) {
			*dst = n.Path(kind, req.ID)
			if err := os.MkdirAll(filepath.Dir(*dst), 0o755); err != nil {
				return nsmgr.Paths{}, err
			}
			if err := os.WriteFile(*dst, nil, 0o444); err != nil {
				return nsmgr.Paths{}, err
			}
			n.pinned[*dst] = true
		}
	}
	return p, nil
}

func (n *fakeNS) Unpin(p nsmgr.Paths) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, path := range []string{p.Net, p.IPC, p.UTS} {
		if path != "" {
			delete(n.pinned, path)
			_ = os.Remove(path)
		}
	}
	return nil
}

func (n *fakeNS) IsPinned(p string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pinned[p]
}

func (n *fakeNS) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.pinned)
}

// fakeNet attaches pods to "fakenet".
type fakeNet struct {
	mu        sync.Mutex
	fail      bool
	attached  map[string]bool
	teardowns int
}

func (f *fakeNet) Setup(_ context.Context, a network.Attachment) (*network.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return nil, fmt.Errorf("CNI ADD: %w", errInjected)
	}
	if a.NetNS == "" {
		return nil, errors.New("CNI ADD without a netns")
	}
	f.attached[a.PodID] = true
	return &network.Result{Network: "fakenet", IPs: []string{"10.88.0.2"}}, nil
}

func (f *fakeNet) Teardown(_ context.Context, a network.Attachment, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.attached, a.PodID)
	f.teardowns++
	return nil
}

func (f *fakeNet) Status() (bool, string, string) { return true, "", "" }
func (f *fakeNet) SetPodCIDR(string) error        { return nil }
func (f *fakeNet) Close() error                   { return nil }

func (f *fakeNet) isAttached(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attached[id]
}

// fakeHolders stands for conmon and runc running PID namespace holders: a
// `sleep` is the holder. Exit routing is the real Monitor's, on temp
// dirs; when a holder ends, the fake conmon writes its exit notice.
type fakeHolders struct {
	*runtime.Monitor
	exitDir string

	mu      sync.Mutex
	fail    map[string]bool // "create", "start"
	holders map[string]*exec.Cmd
	exited  map[string]chan struct{}
}

func newFakeHolders(t *testing.T, runDir string) *fakeHolders {
	exitDir := filepath.Join(runDir, "exits")
	mon, err := runtime.New(runtime.Config{Conmon: "/bin/true", ExitDir: exitDir, AttachDir: filepath.Join(runDir, "attach"), Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	h := &fakeHolders{Monitor: mon, exitDir: exitDir, fail: map[string]bool{}, holders: map[string]*exec.Cmd{}, exited: map[string]chan struct{}{}}
	t.Cleanup(func() {
		h.mu.Lock()
		var waits []chan struct{}
		for id, c := range h.holders {
			_ = c.Process.Kill()
			waits = append(waits, h.exited[id])
		}
		h.mu.Unlock()
		for _, w := range waits {
			<-w
		}
		mon.Close()
	})
	return h
}

func (h *fakeHolders) Create(_ context.Context, o *runtime.CreateOptions) (*runtime.Created, error) {
	o.Owner.Claim(o.ID)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fail["create"] {
		return nil, fmt.Errorf("container create failed: %w", errInjected)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	h.holders[o.ID], h.exited[o.ID] = cmd, done
	go func() {
		defer close(done)
		_ = cmd.Wait()
		_ = os.WriteFile(filepath.Join(h.exitDir, o.ID), nil, 0o600)
	}()
	p, _ := runtime.NewProc(cmd.Process.Pid)
	return &runtime.Created{Container: p}, nil
}

func (h *fakeHolders) holder(id string) (*exec.Cmd, chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.holders[id], h.exited[id]
}

func (h *fakeHolders) Start(_ context.Context, id string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fail["start"] {
		return fmt.Errorf("runc start: %w", errInjected)
	}
	return nil
}

func (h *fakeHolders) Kill(_ context.Context, id string, sig syscall.Signal, _ bool) error {
	c, _ := h.holder(id)
	if c == nil {
		return fmt.Errorf("fake runc: %w", runtime.ErrNotExist)
	}
	return c.Process.Signal(sig)
}

func (h *fakeHolders) Delete(_ context.Context, id string, _ bool) error {
	c, done := h.holder(id)
	if c == nil {
		return nil
	}
	_ = c.Process.Kill()
	<-done
	h.mu.Lock()
	delete(h.holders, id)
	h.mu.Unlock()
	return nil
}

func (h *fakeHolders) State(_ context.Context, id string) (*runtime.State, error) {
	c, done := h.holder(id)
	if c == nil {
		return nil, fmt.Errorf("fake runc: %w", runtime.ErrNotExist)
	}
	st := &runtime.State{ID: id, Pid: c.Process.Pid, Status: "running"}
	select {
	case <-done:
		st.Status = "stopped"
	default:
	}
	return st, nil
}

// running lists the holders still running.
func (h *fakeHolders) running() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for id := range h.holders {
		select {
		case <-h.exited[id]:
		default:
			out = append(out, id)
		}
	}
	return out
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// env is a pod manager's world: config, fakes and temp dirs.
type env struct {
	t       *testing.T
	cfg     *config.Config
	ns      *fakeNS
	net     *fakeNet
	holders *fakeHolders
	events  *runtime.Events
	sub     *runtime.Subscription
	m       *Manager
}

func newEnv(t *testing.T) *env {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Berth.StateDir, cfg.Berth.RunDir, cfg.Berth.LogDir = filepath.Join(dir, "state"), filepath.Join(dir, "run"), filepath.Join(dir, "log")
	// systemd: no cgroup is made by berth itself, none on this host.
	cfg.Berth.Runtime.CgroupManager = "systemd"
	// The holder's rootfs is made from a berth-pause found in PATH.
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, PauseBinary), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	e := &env{t: t, cfg: cfg, ns: &fakeNS{root: filepath.Join(dir, "ns"), pinned: map[string]bool{}},
		net: &fakeNet{attached: map[string]bool{}}, holders: newFakeHolders(t, cfg.Berth.RunDir), events: runtime.NewEvents()}
	e.sub = e.events.Subscribe()
	t.Cleanup(e.sub.Close)
	return e
}

func (e *env) start() *Manager {
	e.t.Helper()
	m, err := New(Deps{Config: func() *config.Config { return e.cfg }, Log: testLog(e.t), Monitor: e.holders, Events: e.events,
		Namespaces: e.ns, Network: e.net, Runtime: func(runtime.OCI) OCIRuntime { return e.holders }})
	if err != nil {
		e.t.Fatal(err)
	}
	if e.m == nil {
		e.t.Cleanup(func() { e.m.Close() })
	}
	e.m = m
	return m
}

// restart is a berthd restart: a new manager on the same records.
func (e *env) restart() *Manager {
	e.m.Close()
	return e.start()
}

// podConfig asks for a pod with its own network, UTS and PID namespaces
// (IPC is the host's: a pod IPC namespace needs a real /dev/shm mount).
func podConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "ns", Uid: name + "-uid"},
		Hostname: name,
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_POD, Ipc: runtimeapi.NamespaceMode_NODE}}},
	}
}

func (e *env) run(name string) string {
	e.t.Helper()
	id, err := e.m.Run(context.Background(), podConfig(name), "")
	if err != nil {
		e.t.Fatalf("run %s: %v", name, err)
	}
	if err := e.m.Publish(id); err != nil {
		e.t.Fatal(err)
	}
	return id
}

func (e *env) get(id string) *Sandbox {
	e.t.Helper()
	sb, err := e.m.Get(id)
	if err != nil {
		e.t.Fatal(err)
	}
	return sb
}

// await waits for event typ of pod id.
func (e *env) await(id string, typ runtimeapi.ContainerEventType) {
	e.t.Helper()
	testutil.AwaitEvent(e.t, e.sub, id, typ)
}

// diskState is the pod's state as the next berthd would read it.
func (e *env) diskState(id string) State {
	e.t.Helper()
	var st status
	if err := e.m.store.Read(id, "status.json", &st); err != nil {
		e.t.Fatal(err)
	}
	return st.State
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}
