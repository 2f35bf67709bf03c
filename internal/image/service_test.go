package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.podman.io/image/v5/types"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/testutil"
)

// testEnv is an image service on private storage, with its own
// registries.conf and policy.json.
type testEnv struct {
	svc  *Service
	dir  string
	cfg  *config.Config
	logs *strings.Builder
}

func newEnv(t testing.TB, registriesConf string, mutate func(*config.Config)) *testEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("containers/storage needs root")
	}
	dir := t.TempDir()
	cfg := config.Default()
	b := &cfg.Berth
	b.Root, b.RunRoot, b.StateDir = filepath.Join(dir, "root"), filepath.Join(dir, "runroot"), filepath.Join(dir, "state")
	b.Image.SignaturePolicy = filepath.Join(dir, "policy.json")
	b.Image.RegistriesConf = filepath.Join(dir, "registries.conf")
	b.Image.RegistriesConfDir = filepath.Join(dir, "registries.conf.d")
	b.Image.CertsDir = filepath.Join(dir, "certs.d")
	b.Image.PullProgressTimeout = config.Duration{Duration: 10 * time.Second}
	writeFile(t, b.Image.SignaturePolicy, `{"default":[{"type":"insecureAcceptAnything"}]}`)
	writeFile(t, b.Image.RegistriesConf, registriesConf)
	if mutate != nil {
		mutate(cfg)
	}
	logs := &strings.Builder{}
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := &testEnv{dir: dir, cfg: cfg, logs: logs}
	e.svc = New(func() *config.Config { return e.cfg }, log, nil)
	t.Cleanup(func() {
		if err := e.svc.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if t.Failed() {
			mu.Lock()
			t.Logf("service log:\n%s", logs.String())
			mu.Unlock()
		}
	})
	return e
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// assertNoLeftovers checks that storage holds exactly want images, no
// layer without an image and no staging file.
func (e *testEnv) assertNoLeftovers(t *testing.T, want int) {
	t.Helper()
	store, err := e.svc.Store()
	if err != nil {
		t.Fatal(err)
	}
	images, err := store.Images()
	if err != nil {
		t.Fatal(err)
	}
	if len(images) != want {
		t.Errorf("storage holds %d images, want %d", len(images), want)
	}
	used, err := usedLayers(store)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := store.Layers()
	for _, l := range layers {
		if !used[l.ID] {
			t.Errorf("orphan layer %s left in storage", l.ID)
		}
	}
	tmp, _ := os.ReadDir(filepath.Join(e.cfg.Berth.Root, "berth-tmp"))
	if len(tmp) > 0 {
		t.Errorf("staging files left: %v", tmp)
	}
}

func TestImagePullStatusRemove(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	img := testutil.BusyboxImage(t, testutil.ImageSpec{User: "1000:1000", Env: []string{"A=1"}, WorkingDir: "/work",
		ExtraLayers: []map[string]string{{"etc/extra": "x"}}})
	reg.Push(t, "lib/busybox:a", img)
	reg.Push(t, "lib/busybox:b", img)
	e := newEnv(t, reg.RegistriesConf(), func(c *config.Config) { c.Berth.Image.PinnedImages = []string{reg.Host + "/pinned*"} })
	ctx := ctxT(t)

	id, err := e.svc.Pull(ctx, reg.Ref("lib/busybox:a"), nil)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	if _, err := e.svc.Pull(ctx, reg.Ref("lib/busybox:b"), nil); err != nil {
		t.Fatalf("pull b: %v", err)
	}
	info, err := e.svc.Resolve(ctx, reg.Ref("lib/busybox:a"))
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	if info.ID != id || len(info.RepoTags) != 2 || len(info.RepoDigests) == 0 || info.Size == 0 {
		t.Errorf("info = %+v", info)
	}
	if info.UID == nil || *info.UID != 1000 || info.Username != "" {
		t.Errorf("uid = %v, username %q", info.UID, info.Username)
	}
	if info.Config.Config.WorkingDir != "/work" || !strings.Contains(strings.Join(info.Config.Config.Env, ","), "A=1") {
		t.Errorf("config = %+v", info.Config.Config)
	}
	for _, q := range []string{id, "sha256:" + id, id[:12], info.RepoDigests[0]} {
		if got, err := e.svc.Resolve(ctx, q); err != nil || got.ID != id {
			t.Errorf("resolve %q: %v", q, err)
		}
	}
	if _, err := e.svc.Resolve(ctx, reg.Ref("lib/busybox:nope")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("resolve missing: %v, want NotFound", err)
	}
	if _, err := e.svc.Resolve(ctx, "UPPER/case"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("resolve bad name: %v, want InvalidArgument", err)
	}
	list, err := e.svc.List(ctx, "")
	if err != nil || len(list) != 1 {
		t.Fatalf("list = %v, %v", list, err)
	}
	if list, _ := e.svc.List(ctx, reg.Ref("lib/busybox:zzz")); len(list) != 0 {
		t.Errorf("filtered list = %v", list)
	}

	// Removing one of two tags untags; the last one removes the image.
	if err := e.svc.Remove(ctx, reg.Ref("lib/busybox:a")); err != nil {
		t.Fatalf("untag: %v", err)
	}
	if info, err := e.svc.Resolve(ctx, id); err != nil || len(info.RepoTags) != 1 {
		t.Fatalf("after untag: %+v, %v", info, err)
	}
	if err := e.svc.Remove(ctx, reg.Ref("lib/busybox:b")); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if _, err := e.svc.Resolve(ctx, id); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("after remove: %v", err)
	}
	if err := e.svc.Remove(ctx, id); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("remove again: %v", err)
	}
	e.assertNoLeftovers(t, 0)

	// Pinned images are reported and never removed.
	reg.Push(t, "pinned/busybox:1", img)
	if _, err := e.svc.Pull(ctx, reg.Ref("pinned/busybox:1"), nil); err != nil {
		t.Fatal(err)
	}
	if info, _ := e.svc.Resolve(ctx, reg.Ref("pinned/busybox:1")); info == nil || !info.Pinned {
		t.Errorf("pinned not reported: %+v", info)
	}
	if err := e.svc.Remove(ctx, id); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("remove pinned: %v, want FailedPrecondition", err)
	}
}

func TestImageInUse(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	reg.Push(t, "busybox:1", testutil.BusyboxImage(t, testutil.ImageSpec{}))
	e := newEnv(t, reg.RegistriesConf(), nil)
	ctx := ctxT(t)
	id, err := e.svc.Pull(ctx, reg.Ref("busybox:1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	store, _ := e.svc.Store()
	c, err := store.CreateContainer("", nil, id, "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	err = e.svc.Remove(ctx, id)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), c.ID) {
		t.Errorf("remove in-use image: %v, want FailedPrecondition naming %s", err, c.ID)
	}
	fs, err := e.svc.FsInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fs.Images.UsedBytes < 500_000 || fs.Images.InodesUsed < 10 || fs.Containers.InodesUsed == 0 || fs.Images.Mountpoint != e.cfg.Berth.Root {
		t.Errorf("fs info = %+v", fs)
	}
	if err := store.DeleteContainer(c.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Remove(ctx, id); err != nil {
		t.Errorf("remove: %v", err)
	}
}

func TestImagePullDedupe(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{Handler: testutil.StallBlobs(500 * time.Millisecond)})
	reg.Push(t, "busybox:1", testutil.BusyboxImage(t, testutil.ImageSpec{}))
	e := newEnv(t, reg.RegistriesConf(), nil)
	ctx := ctxT(t)

	// The first caller gives up early: the second must still get the image.
	first, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	ids := make([]string, 2)
	for i, c := range []context.Context{first, ctx} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], errs[i] = e.svc.Pull(c, reg.Ref("busybox:1"), nil)
		}()
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	if !errors.Is(errs[0], context.DeadlineExceeded) {
		t.Errorf("first pull: %v, want its deadline", errs[0])
	}
	if errs[1] != nil || ids[1] == "" {
		t.Fatalf("second pull: %v", errs[1])
	}
	blobs := 0
	for _, r := range reg.RequestLog() {
		if strings.HasPrefix(r, "GET ") && strings.Contains(r, "/blobs/") {
			blobs++
		}
	}
	if blobs != 2 { // config + one layer
		t.Errorf("blob fetches = %d, want 2 (one pull): %v", blobs, reg.RequestLog())
	}
}

func TestImagePullFailures(t *testing.T) {
	img := testutil.BusyboxImage(t, testutil.ImageSpec{ExtraLayers: []map[string]string{{"a": "1"}, {"b": "2"}}})
	cases := []struct {
		name    string
		opts    testutil.RegistryOptions
		conf    func(host string) string
		auth    *Auth
		timeout time.Duration
		want    error
		msg     string
	}{
		{name: "corrupt", opts: testutil.RegistryOptions{Handler: testutil.CorruptBlobs}, want: nil, msg: "digest"},
		{name: "refuse", opts: testutil.RegistryOptions{Handler: testutil.RefuseAll}, want: errdefs.ErrUnavailable, msg: "500"},
		{name: "stall", opts: testutil.RegistryOptions{Handler: testutil.StallBlobs(time.Minute)}, timeout: time.Second, want: errdefs.ErrDeadlineExceeded, msg: "no progress"},
		{name: "badauth", opts: testutil.RegistryOptions{Username: "u", Password: "p"}, auth: &Auth{Username: "u", Password: "wrong"}, want: errdefs.ErrUnauthenticated},
		{name: "noauth", opts: testutil.RegistryOptions{Username: "u", Password: "p"}, want: errdefs.ErrUnauthenticated},
		// Without insecure = true (or insecure_registries), plain HTTP is refused.
		{name: "plain-http", conf: func(string) string { return "" }, msg: "http"},
		{name: "blocked", conf: func(h string) string {
			return fmt.Sprintf("[[registry]]\nlocation = %q\nblocked = true\n", h)
		}, want: errdefs.ErrFailedPrecondition, msg: "blocked"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reg := testutil.StartRegistry(t, tc.opts)
			reg.Push(t, "busybox:1", img)
			conf := reg.RegistriesConf()
			if tc.conf != nil {
				conf = tc.conf(reg.Host)
			}
			e := newEnv(t, conf, func(c *config.Config) {
				if tc.timeout > 0 {
					c.Berth.Image.PullProgressTimeout.Duration = tc.timeout
				}
			})
			_, err := e.svc.Pull(ctxT(t), reg.Ref("busybox:1"), tc.auth)
			if err == nil {
				t.Fatal("pull succeeded")
			}
			t.Logf("error: %v", err)
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error kind: want %v", tc.want)
			}
			if !strings.Contains(err.Error(), reg.Ref("busybox:1")) || !strings.Contains(strings.ToLower(err.Error()), tc.msg) {
				t.Errorf("error does not name the image and %q", tc.msg)
			}
			e.assertNoLeftovers(t, 0)
		})
	}
}

func TestImageDiskFull(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	reg.Push(t, "busybox:1", testutil.BusyboxImage(t, testutil.ImageSpec{}))
	e := newEnv(t, reg.RegistriesConf(), nil)
	if err := os.MkdirAll(e.cfg.Berth.Root, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", e.cfg.Berth.Root).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		// Storage must let go of the tmpfs before it goes away.
		if err := e.svc.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		exec.Command("umount", "-l", e.cfg.Berth.Root).Run()
	})
	_, err := e.svc.Pull(ctxT(t), reg.Ref("busybox:1"), nil)
	t.Logf("pull: %v", err)
	if !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), reg.Ref("busybox:1")) {
		t.Errorf("pull on a full disk: %v, want ResourceExhausted naming the image", err)
	}
	e.assertNoLeftovers(t, 0)
}

func TestImageShortNames(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	reg.Push(t, "library/busybox:latest", testutil.BusyboxImage(t, testutil.ImageSpec{}))
	// TOML: top-level keys come before the [[registry]] tables.
	conf := fmt.Sprintf("unqualified-search-registries = [%q]\n", reg.Host) + reg.RegistriesConf()
	e := newEnv(t, conf, nil)
	ctx := ctxT(t)
	id, err := e.svc.Pull(ctx, "library/busybox", nil)
	if err != nil {
		t.Fatalf("pull short name: %v", err)
	}
	if info, err := e.svc.Resolve(ctx, "library/busybox"); err != nil || info.ID != id {
		t.Errorf("resolve short name: %v", err)
	}
	// Two search registries make a short name ambiguous.
	writeFile(t, e.cfg.Berth.Image.RegistriesConf, fmt.Sprintf("unqualified-search-registries = [%q, \"quay.io\"]\n", reg.Host)+reg.RegistriesConf())
	e.svc.Reload()
	_, err = e.svc.Pull(ctx, "library/busybox", nil)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "ambiguous") {
		t.Errorf("ambiguous short name: %v", err)
	}
	// An alias settles it.
	writeFile(t, e.cfg.Berth.Image.RegistriesConf, fmt.Sprintf("unqualified-search-registries = [%q, \"quay.io\"]\n[aliases]\n\"bb\" = \"%s/library/busybox\"\n", reg.Host, reg.Host)+reg.RegistriesConf())
	e.svc.Reload()
	if got, err := e.svc.Pull(ctx, "bb", nil); err != nil || got != id {
		t.Errorf("pull through an alias: %v", err)
	}
	if _, err := e.svc.Pull(ctx, "Bad//Name", nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad name: %v", err)
	}
}

func TestPinnedMatch(t *testing.T) {
	tags := []string{"docker.io/library/busybox:1.36", "quay.io/x/y:2"}
	for _, tc := range []struct {
		pattern string
		want    bool
	}{
		{"busybox:1.36", true},
		{"docker.io/library/busybox:1.36", true},
		{"busybox", false},
		{"quay.io/x/*", true},
		{"quay.io/z*", false},
		{"abcdef", true},
		{"*", true},
	} {
		if got := pinned([]string{tc.pattern}, "abcdef", tags, nil); got != tc.want {
			t.Errorf("pinned(%q) = %v, want %v", tc.pattern, got, tc.want)
		}
	}
}

func TestAuthApply(t *testing.T) {
	for _, tc := range []struct {
		auth             *Auth
		user, pass, id   string
		registryToken    string
		wantErr, wantNil bool
	}{
		{auth: nil, wantNil: true},
		{auth: &Auth{}, wantNil: true},
		{auth: &Auth{Username: "u", Password: "p"}, user: "u", pass: "p"},
		{auth: &Auth{Auth: "dTpwOng="}, user: "u", pass: "p:x"},
		{auth: &Auth{Auth: "!!"}, wantErr: true},
		{auth: &Auth{IdentityToken: "tok"}, id: "tok"},
		{auth: &Auth{RegistryToken: "bearer"}, registryToken: "bearer", wantNil: true},
	} {
		sys := &types.SystemContext{}
		err := tc.auth.apply(sys)
		if (err != nil) != tc.wantErr {
			t.Errorf("%+v: err %v", tc.auth, err)
			continue
		}
		if tc.wantErr {
			continue
		}
		if sys.DockerBearerRegistryToken != tc.registryToken {
			t.Errorf("%+v: registry token %q", tc.auth, sys.DockerBearerRegistryToken)
		}
		if tc.wantNil {
			if sys.DockerAuthConfig != nil {
				t.Errorf("%+v: auth config %+v, want none", tc.auth, sys.DockerAuthConfig)
			}
			continue
		}
		a := sys.DockerAuthConfig
		if a == nil || a.Username != tc.user || a.Password != tc.pass || a.IdentityToken != tc.id {
			t.Errorf("%+v: auth config %+v", tc.auth, a)
		}
	}
	if (&Auth{Username: "a"}).key() == (&Auth{Username: "b"}).key() || (*Auth)(nil).key() != "" {
		t.Error("dedup keys do not tell credentials apart")
	}
}
