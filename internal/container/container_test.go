package container

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/pod"
	"github.com/berth-cri/berth/internal/runtime"
	"github.com/berth-cri/berth/internal/spec"
)

func TestSignals(t *testing.T) {
	for in, want := range map[string]unix.Signal{
		"": unix.SIGTERM, "SIGTERM": unix.SIGTERM, "term": unix.SIGTERM, "9": unix.SIGKILL, "SIGUSR1": unix.SIGUSR1,
		"SIGRTMIN": 34, "SIGRTMIN+3": 37, "SIGRTMINPLUS3": 37, "SIGRTMAX-2": 62, "SIGRTMAXMINUS2": 62, "SIGIOT": unix.SIGABRT,
		"SIGNOPE": 0, "99": 0,
	} {
		if got := parseSignal(in); got != want {
			t.Errorf("parseSignal(%q) = %d, want %d", in, got, want)
		}
	}
	if s := stopSignal(runtimeapi.Signal_SIGNAL_SIGQUIT, "SIGUSR1"); s != "SIGQUIT" {
		t.Errorf("request signal lost: %s", s)
	}
	if s := stopSignal(runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT, "usr1"); s != "SIGUSR1" {
		t.Errorf("image signal: %s", s)
	}
	if s := stopSignal(runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT, "10"); s != "SIGUSR1" {
		t.Errorf("numeric image signal: %s", s)
	}
	if s := stopSignal(runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT, "bogus"); s != "SIGTERM" {
		t.Errorf("bogus image signal: %s", s)
	}
	if e := signalEnum("SIGUSR1"); e != runtimeapi.Signal_SIGNAL_SIGUSR1 {
		t.Errorf("enum %v", e)
	}
}

// testManager is a Manager with only what the pure paths need.
func testManager(t *testing.T) *Manager {
	cfg := config.Default()
	cfg.Berth.LogDir = t.TempDir()
	return &Manager{
		cfg: func() *config.Config { return cfg }, log: slog.Default(), events: runtime.NewEvents(),
		host: &spec.Host{}, ctrs: map[string]*container{}, names: map[string]*reservation{},
		done: make(chan struct{}),
	}
}

func TestReservation(t *testing.T) {
	m := testManager(t)
	ctx := context.Background()
	_, r, err := m.reserve(ctx, "n")
	if r == nil || err != nil {
		t.Fatal("first reservation failed")
	}
	// A concurrent retry waits; the first attempt fails, so the retry
	// becomes the owner.
	got := make(chan *reservation, 1)
	go func() {
		_, r2, _ := m.reserve(ctx, "n")
		got <- r2
	}()
	time.Sleep(20 * time.Millisecond)
	m.finishReservation(r, "n", "", errors.New("boom"))
	r = <-got
	if r == nil {
		t.Fatal("retry after a failure did not become the owner")
	}
	// It succeeds after its client left: the next retry gets the id.
	m.abandon(r)
	m.finishReservation(r, "n", "id1", nil)
	if id, r2, err := m.reserve(ctx, "n"); r2 != nil || err != nil || id != "id1" {
		t.Fatalf("retry after an abandoned success: %q %v %v", id, r2, err)
	}
	// Claimed once; a further create with the name is a duplicate.
	if _, _, err := m.reserve(ctx, "n"); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("duplicate name: %v", err)
	}
	// The client leaves after the creation finished: same outcome.
	_, r, _ = m.reserve(ctx, "late")
	m.finishReservation(r, "late", "id2", nil)
	m.abandon(r)
	if id, _, err := m.reserve(ctx, "late"); id != "id2" || err != nil {
		t.Fatalf("late abandon: %q %v", id, err)
	}
	// A waiting retry gives up with its context.
	if _, r, _ := m.reserve(ctx, "m"); r == nil {
		t.Fatal("m")
	}
	short, c2 := context.WithTimeout(ctx, 10*time.Millisecond)
	defer c2()
	if _, _, err := m.reserve(short, "m"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting retry: %v", err)
	}
}

func TestLogPath(t *testing.T) {
	m := testManager(t)
	dir := t.TempDir()
	sb := &pod.Sandbox{ID: "pod1", LogDirectory: dir}
	cfg := func(p string) *runtimeapi.ContainerConfig {
		return &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c", Attempt: 2}, LogPath: p}
	}
	if p, err := m.logPath(sb, cfg("c/2.log")); err != nil || p != filepath.Join(dir, "c/2.log") {
		t.Fatalf("%q %v", p, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "c")); err != nil {
		t.Fatal("the container's log dir was not made")
	}
	if p, err := m.logPath(sb, cfg("")); err != nil || p != filepath.Join(dir, "c_2.log") {
		t.Fatalf("default: %q %v", p, err)
	}
	for _, bad := range []string{"../x.log", "/etc/x.log", "a:b.log", "..", "."} {
		if _, err := m.logPath(sb, cfg(bad)); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("log path %q: %v", bad, err)
		}
	}
	// No pod log dir: berth's log_dir/<pod>.
	if p, err := m.logPath(&pod.Sandbox{ID: "pod2"}, cfg("x.log")); err != nil || p != filepath.Join(m.cfg().Berth.LogDir, "pod2", "x.log") {
		t.Fatalf("%q %v", p, err)
	}
}

func TestAnnotations(t *testing.T) {
	m := testManager(t)
	if err := m.checkAnnotations("runc", map[string]string{"io.kubernetes.container.hash": "1", "note": "x"}); err != nil {
		t.Fatal(err)
	}
	if err := m.checkAnnotations("runc", map[string]string{"io.berth.devices": "x"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("berth annotation without an allow list: %v", err)
	}
	m.allowed = func(h string) []string {
		if h == "special" {
			return []string{"io.berth.devices"}
		}
		return nil
	}
	if err := m.checkAnnotations("special", map[string]string{"io.berth.devices": "x"}); err != nil {
		t.Fatal(err)
	}
}

func TestStatusAndList(t *testing.T) {
	m := testManager(t)
	now := time.Now()
	add := func(id, podID string, st State, labels map[string]string) {
		m.ctrs[id] = &container{
			meta: &Meta{ID: id, PodID: podID, CtrName: "n-" + id, CreatedAt: now.Add(time.Duration(len(m.ctrs)) * time.Second),
				Labels: labels, Image: ImageRef{Image: "abc123", ID: "abc123", Name: "docker.io/library/busybox:latest",
					Digest: "docker.io/library/busybox@sha256:00"}, StopSignal: "SIGTERM",
				User: spec.User{UID: 1, GID: 2, AdditionalGids: []uint32{3}}},
			st: Status{State: st, ExitCode: 3, Reason: ReasonError, FinishedAt: now},
		}
	}
	add("aaa1", "p1", StateRunning, map[string]string{"app": "x"})
	add("aaa2", "p1", StateExited, map[string]string{"app": "y"})
	add("bbb1", "p2", StateCreated, nil)
	ids := func(f *runtimeapi.ContainerFilter) (out []string) {
		for _, c := range m.List(f) {
			out = append(out, c.GetId())
		}
		return out
	}
	for _, tc := range []struct {
		f    *runtimeapi.ContainerFilter
		want string
	}{
		{nil, "[aaa1 aaa2 bbb1]"},
		{&runtimeapi.ContainerFilter{Id: "aaa"}, "[aaa1 aaa2]"},
		{&runtimeapi.ContainerFilter{PodSandboxId: "p2"}, "[bbb1]"},
		{&runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED}}, "[aaa2]"},
		{&runtimeapi.ContainerFilter{LabelSelector: map[string]string{"app": "x"}}, "[aaa1]"},
		{&runtimeapi.ContainerFilter{PodSandboxId: "p1", LabelSelector: map[string]string{"app": "y"}}, "[aaa2]"},
	} {
		if got := ids(tc.f); fmtList(got) != tc.want {
			t.Errorf("filter %v: %v, want %s", tc.f, got, tc.want)
		}
	}
	if _, err := m.get("aaa"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("ambiguous prefix: %v", err)
	}
	if c, err := m.get("bbb"); err != nil || c.meta.ID != "bbb1" {
		t.Fatalf("unique prefix: %v", err)
	}
	run := criStatus(m.ctrs["aaa1"].meta, m.ctrs["aaa1"].st)
	if run.GetExitCode() != 0 || run.GetReason() != "" || run.GetImage().GetImage() != "docker.io/library/busybox:latest" ||
		run.GetImageRef() != "docker.io/library/busybox@sha256:00" || run.GetImageId() != "abc123" {
		t.Fatalf("running status %v", run)
	}
	if u := run.GetUser().GetLinux(); u.GetUid() != 1 || u.GetGid() != 2 || !slices.Equal(u.GetSupplementalGroups(), []int64{2, 3}) {
		t.Fatalf("user %v", u)
	}
	ex := criStatus(m.ctrs["aaa2"].meta, m.ctrs["aaa2"].st)
	if ex.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || ex.GetExitCode() != 3 || ex.GetReason() != ReasonError || ex.GetFinishedAt() == 0 {
		t.Fatalf("exited status %v", ex)
	}
}

func fmtList(s []string) string {
	out := "["
	for i, v := range s {
		if i > 0 {
			out += " "
		}
		out += v
	}
	return out + "]"
}

func TestValidName(t *testing.T) {
	for _, bad := range []string{"a/b", "a b", "x\n"} {
		if validName(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if validName("web-1.x_y") != nil {
		t.Error("plain name refused")
	}
}
