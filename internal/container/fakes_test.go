package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	ociv1 "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"go.podman.io/storage"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/image"
	"github.com/berth-cri/berth/internal/pod"
	"github.com/berth-cri/berth/internal/runtime"
	"github.com/berth-cri/berth/internal/spec"
	"github.com/berth-cri/berth/internal/testutil"
)

// errInjected is what a fake step told to fail returns.
var errInjected = errors.New("injected failure")

// fakeRuntime stands for the runtime layer: conmon (Prepare, then Start
// or Abort) and the OCI runtime (start, state, kill, delete, ...). Exit
// routing, the exit dir and attach links are the real Monitor's, on temp
// dirs, with a conmon that is never run. The processes are real and
// harmless: a `sleep` stands for conmon, and the container's init is a
// shell that waits for "runc start" on its stdin, then execs the
// container's args on the host. When the init ends, the fake conmon does
// what conmon does: it writes the exit code to the persist dir, then
// <exit dir>/<id>, then exits.
type fakeRuntime struct {
	*runtime.Monitor
	exitDir string

	mu   sync.Mutex
	ctrs map[string]*fakeCtr
	// fail makes a step fail: "prepare", "conmon-start", "runtime-start",
	// "status-write" (conmon-start leaves status.json unwritable).
	fail     map[string]bool
	prepared map[string]bool
	aborted  map[string]bool
	deleted  map[string]bool
	// states answers State for ids the fake did not create (loaded records).
	states map[string]runtime.State
	// conmons are reported by Conmons besides the live fake ones.
	conmons map[string]runtime.Proc
	updates int
}

// fakeCtr is one container the fake conmon started.
type fakeCtr struct {
	opts       *runtime.CreateOptions
	conmon     *exec.Cmd
	init       *exec.Cmd
	gate       io.WriteCloser
	started    bool
	conmonDied bool
	// exited is closed once the init is reaped and the exit written.
	exited chan struct{}
}

func newFakeRuntime(t *testing.T, runDir string) *fakeRuntime {
	exitDir := filepath.Join(runDir, "exits")
	mon, err := runtime.New(runtime.Config{Conmon: "/bin/true", ExitDir: exitDir, AttachDir: filepath.Join(runDir, "attach"), Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRuntime{Monitor: mon, exitDir: exitDir, ctrs: map[string]*fakeCtr{}, fail: map[string]bool{},
		prepared: map[string]bool{}, aborted: map[string]bool{}, deleted: map[string]bool{},
		states: map[string]runtime.State{}, conmons: map[string]runtime.Proc{}}
	t.Cleanup(func() {
		f.mu.Lock()
		ctrs := f.ctrs
		f.mu.Unlock()
		for _, c := range ctrs {
			_ = c.init.Process.Kill()
			<-c.exited
		}
		mon.Close()
	})
	return f
}

func (f *fakeRuntime) failing(step string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fail[step]
}

func (f *fakeRuntime) ctr(id string) *fakeCtr {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ctrs[id]
}

// Prepare claims the id like the real driver, and starts nothing yet.
func (f *fakeRuntime) Prepare(o *runtime.CreateOptions) (Pending, error) {
	o.Owner.Claim(o.ID)
	if f.failing("prepare") {
		return nil, fmt.Errorf("start conmon: %w", errInjected)
	}
	f.mu.Lock()
	f.prepared[o.ID] = true
	f.mu.Unlock()
	return &fakePending{f: f, o: o}, nil
}

type fakePending struct {
	f *fakeRuntime
	o *runtime.CreateOptions
}

func (p *fakePending) Abort() {
	p.f.mu.Lock()
	p.f.aborted[p.o.ID] = true
	p.f.mu.Unlock()
}

// Start runs the conmon and init stand-ins; like the real one, a failed
// start leaves nothing running.
func (p *fakePending) Start(ctx context.Context) (*runtime.Created, error) {
	f, o := p.f, p.o
	if f.failing("conmon-start") {
		p.Abort()
		return nil, fmt.Errorf("container create failed: %w", errInjected)
	}
	if f.failing("status-write") {
		// rename(2) cannot replace a directory with a file.
		if err := os.MkdirAll(filepath.Join(o.PersistDir, statusFile, "x"), 0o700); err != nil {
			return nil, err
		}
	}
	var s specs.Spec
	data, err := os.ReadFile(filepath.Join(o.Bundle, "config.json"))
	if err == nil {
		err = json.Unmarshal(data, &s)
	}
	if err != nil {
		return nil, fmt.Errorf("fake runc create: %w", err)
	}
	// conmon creates the log file.
	if err := os.WriteFile(o.LogPath, nil, 0o600); err != nil {
		return nil, err
	}
	conmon := exec.Command("sleep", "60")
	if err := conmon.Start(); err != nil {
		return nil, err
	}
	init := exec.Command("sh", append([]string{"-c", `read _ && exec "$@"`, "sh"}, s.Process.Args...)...)
	init.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	gate, err := init.StdinPipe()
	if err == nil {
		err = init.Start()
	}
	if err != nil {
		_ = conmon.Process.Kill()
		_ = conmon.Wait()
		return nil, err
	}
	c := &fakeCtr{opts: o, conmon: conmon, init: init, gate: gate, exited: make(chan struct{})}
	f.mu.Lock()
	f.ctrs[o.ID] = c
	f.mu.Unlock()
	go f.watch(c)
	cp, _ := runtime.NewProc(conmon.Process.Pid)
	ip, _ := runtime.NewProc(init.Process.Pid)
	return &runtime.Created{Conmon: cp, Container: ip}, nil
}

// watch is the fake conmon: it reports the init's exit and exits.
func (f *fakeRuntime) watch(c *fakeCtr) {
	defer close(c.exited)
	_ = c.init.Wait()
	f.mu.Lock()
	died := c.conmonDied
	f.mu.Unlock()
	if died {
		return
	}
	ws := c.init.ProcessState.Sys().(syscall.WaitStatus)
	code := ws.ExitStatus()
	if ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	_ = os.WriteFile(filepath.Join(c.opts.PersistDir, runtime.ExitFile), []byte(fmt.Sprint(code)), 0o600)
	_ = os.WriteFile(filepath.Join(f.exitDir, c.opts.ID), []byte(fmt.Sprint(code)), 0o600)
	_ = c.conmon.Process.Kill()
	_ = c.conmon.Wait()
}

// killConmon makes the conmon of id die without writing an exit file.
func (f *fakeRuntime) killConmon(id string) {
	c := f.ctr(id)
	f.mu.Lock()
	c.conmonDied = true
	f.mu.Unlock()
	_ = c.conmon.Process.Kill()
	_ = c.conmon.Wait()
}

func (f *fakeRuntime) Conmons() map[string]runtime.Proc {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]runtime.Proc{}
	for id, p := range f.conmons {
		out[id] = p
	}
	for id, c := range f.ctrs {
		if p, err := runtime.NewProc(c.conmon.Process.Pid); err == nil && p.Alive() {
			out[id] = p
		}
	}
	return out
}

func notExist(id string) error { return fmt.Errorf("fake runc: %s: %w", id, runtime.ErrNotExist) }

func (f *fakeRuntime) Start(_ context.Context, id string) error {
	if f.failing("runtime-start") {
		return fmt.Errorf("runc start: %w", errInjected)
	}
	c := f.ctr(id)
	if c == nil {
		return notExist(id)
	}
	f.mu.Lock()
	c.started = true
	f.mu.Unlock()
	_, err := io.WriteString(c.gate, "go\n")
	return err
}

func (f *fakeRuntime) State(_ context.Context, id string) (*runtime.State, error) {
	c := f.ctr(id)
	f.mu.Lock()
	defer f.mu.Unlock()
	if c == nil {
		if s, ok := f.states[id]; ok {
			return &s, nil
		}
		return nil, notExist(id)
	}
	st := &runtime.State{ID: id, Pid: c.init.Process.Pid, Status: "created", Bundle: c.opts.Bundle}
	select {
	case <-c.exited:
		st.Status = "stopped"
	default:
		if c.started {
			st.Status = "running"
		}
	}
	return st, nil
}

func (f *fakeRuntime) Kill(_ context.Context, id string, sig syscall.Signal, _ bool) error {
	c := f.ctr(id)
	if c == nil {
		return notExist(id)
	}
	return c.init.Process.Signal(sig)
}

// Delete forgets the container, killing its init first with force, like
// runc delete --force.
func (f *fakeRuntime) Delete(_ context.Context, id string, force bool) error {
	c := f.ctr(id)
	f.mu.Lock()
	f.deleted[id] = true
	f.mu.Unlock()
	if c == nil {
		return nil
	}
	if force {
		_ = c.init.Process.Kill()
	}
	select {
	case <-c.exited:
	default:
		if !force {
			return fmt.Errorf("fake runc delete %s: container is running", id)
		}
		<-c.exited
	}
	f.mu.Lock()
	delete(f.ctrs, id)
	f.mu.Unlock()
	return nil
}

func (f *fakeRuntime) Update(context.Context, string, *specs.LinuxResources) error {
	f.mu.Lock()
	f.updates++
	f.mu.Unlock()
	return nil
}

func (f *fakeRuntime) ExecSync(_ context.Context, _ string, p *specs.Process, _ time.Duration, _ int) (*runtime.ExecResult, error) {
	return &runtime.ExecResult{Stdout: []byte(fmt.Sprint(p.Args))}, nil
}

func (f *fakeRuntime) List(context.Context) ([]runtime.State, error) {
	var out []runtime.State
	for _, id := range f.ids() {
		if st, err := f.State(context.Background(), id); err == nil {
			out = append(out, *st)
		}
	}
	return out, nil
}

func (f *fakeRuntime) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for id := range f.ctrs {
		ids = append(ids, id)
	}
	return ids
}

// running reports whether any process the fake started still runs.
func (f *fakeRuntime) running() []string {
	var out []string
	for _, id := range f.ids() {
		c := f.ctr(id)
		select {
		case <-c.exited:
		default:
			out = append(out, id)
		}
	}
	return out
}

// fakeLayers is the writable-layer store: a directory per container.
type fakeLayers struct {
	root string
	fail map[string]bool // "create-layer", "mount"

	mu      sync.Mutex
	ctrs    map[string]storage.Container
	mounted map[string]bool
}

func (l *fakeLayers) failing(step string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fail[step]
}

func (l *fakeLayers) CreateContainer(id string, _ []string, img, _, metadata string, _ *storage.ContainerOptions) (*storage.Container, error) {
	if l.failing("create-layer") {
		return nil, errInjected
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.ctrs[id]; ok {
		return nil, storage.ErrDuplicateID
	}
	c := storage.Container{ID: id, ImageID: img, Metadata: metadata}
	l.ctrs[id] = c
	return &c, nil
}

func (l *fakeLayers) Mount(id, _ string) (string, error) {
	if l.failing("mount") {
		return "", errInjected
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.ctrs[id]; !ok {
		return "", storage.ErrContainerUnknown
	}
	dir := filepath.Join(l.root, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	l.mounted[id] = true
	return dir, nil
}

func (l *fakeLayers) Unmount(id string, _ bool) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.ctrs[id]; !ok {
		return false, storage.ErrContainerUnknown
	}
	delete(l.mounted, id)
	return false, nil
}

func (l *fakeLayers) DeleteContainer(id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.ctrs[id]; !ok {
		return storage.ErrContainerUnknown
	}
	if l.mounted[id] {
		return fmt.Errorf("layer of %s is still mounted", id)
	}
	delete(l.ctrs, id)
	return os.RemoveAll(filepath.Join(l.root, id))
}

func (l *fakeLayers) Containers() ([]storage.Container, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []storage.Container
	for _, c := range l.ctrs {
		out = append(out, c)
	}
	return out, nil
}

func (l *fakeLayers) count() (layers, mounted int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ctrs), len(l.mounted)
}

// fakeImages knows one image.
type fakeImages struct{ fail bool }

func (i *fakeImages) ResolveNamed(_ context.Context, name, _ string) (*image.ImageInfo, error) {
	if i.fail {
		return nil, fmt.Errorf("image %s: %w", name, errInjected)
	}
	return &image.ImageInfo{ID: "0123abcd", RepoTags: []string{"localhost/fake:latest"},
		Config: ociv1.Image{Config: ociv1.ImageConfig{Cmd: []string{"sleep", "60"}, Env: []string{"PATH=/bin"}}}}, nil
}

func (i *fakeImages) MountImage(context.Context, string, string) (*image.MountedImage, error) {
	return nil, fmt.Errorf("fake images mount no image volumes")
}

func (i *fakeImages) ReleaseImages(string) error { return nil }

func (i *fakeImages) AdoptImage(string, string) {}

func (i *fakeImages) Store() (storage.Store, error) {
	return nil, errors.New("fake images have no store")
}

// env is a manager's world: config, fakes and temp dirs. start builds
// the manager on it (again, for a restart).
type env struct {
	t      *testing.T
	cfg    *config.Config
	rt     *fakeRuntime
	layers *fakeLayers
	images *fakeImages
	events *runtime.Events
	sub    *runtime.Subscription
	m      *Manager
}

func newEnv(t *testing.T) *env {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Berth.StateDir, cfg.Berth.RunDir, cfg.Berth.LogDir = filepath.Join(dir, "state"), filepath.Join(dir, "run"), filepath.Join(dir, "log")
	// No conmon cgroup: the fake conmon runs where the test runs.
	cfg.Berth.Runtime.ConmonCgroup = ""
	e := &env{t: t, cfg: cfg, rt: newFakeRuntime(t, cfg.Berth.RunDir), images: &fakeImages{}, events: runtime.NewEvents(),
		layers: &fakeLayers{root: filepath.Join(dir, "layers"), fail: map[string]bool{}, ctrs: map[string]storage.Container{}, mounted: map[string]bool{}}}
	e.sub = e.events.Subscribe()
	t.Cleanup(e.sub.Close)
	return e
}

func (e *env) start(rebooted bool) *Manager {
	e.t.Helper()
	m, err := New(Deps{
		Config: func() *config.Config { return e.cfg }, Log: testLog(e.t), Images: e.images, Events: e.events,
		Host: &spec.Host{}, Rebooted: rebooted, Conmon: e.rt,
		Runtime: func(runtime.OCI) OCIRuntime { return e.rt },
		Layers:  func() (Layers, error) { return e.layers, nil },
	})
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
	return e.start(false)
}

// sandbox is a ready pod on the host's namespaces.
func (e *env) sandbox() *pod.Sandbox {
	return &pod.Sandbox{ID: "pod1", Metadata: pod.Metadata{Name: "p", Namespace: "ns", UID: "u1"}, State: pod.StateReady,
		LogDirectory: filepath.Join(e.cfg.Berth.LogDir, "pod1"), Namespaces: pod.Namespaces{Network: pod.ModeNode, PID: pod.ModeContainer, IPC: pod.ModeNode}}
}

// config asks for a container named name running args.
func ctrConfig(name string, args ...string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name}, Image: &runtimeapi.ImageSpec{Image: "localhost/fake:latest"},
		Command: args, LogPath: name + ".log",
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}}},
	}
}

func (e *env) create(name string, args ...string) string {
	e.t.Helper()
	id, _, err := e.m.Create(context.Background(), e.sandbox(), ctrConfig(name, args...))
	if err != nil {
		e.t.Fatalf("create %s: %v", name, err)
	}
	return id
}

// await waits for event typ of container id.
func (e *env) await(id string, typ runtimeapi.ContainerEventType) {
	e.t.Helper()
	testutil.AwaitEvent(e.t, e.sub, id, typ)
}

func (e *env) status(id string) *runtimeapi.ContainerStatus {
	e.t.Helper()
	st, _, err := e.m.Status(context.Background(), id, false)
	if err != nil {
		e.t.Fatalf("status of %s: %v", id, err)
	}
	return st
}

// testLog logs into the test's output, shown when it fails.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// entries lists a directory; a missing one is empty.
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

// sleeper starts `sleep 60` standing for a process a record names.
func sleeper(t *testing.T) runtime.Proc {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	p, err := runtime.NewProc(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
