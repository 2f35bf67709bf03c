package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// Image tests drive a real berthd over its socket. Registries run inside
// the test on 127.0.0.1; registries.conf rewrites send well-known names
// there, so no test ever resolves a real host name.

// imgSpec is the image most tests pull: several layers, a numeric USER.
var imgSpec = testutil.ImageSpec{
	User:        "1000:1000",
	Env:         []string{"GREETING=hello"},
	WorkingDir:  "/srv",
	Entrypoint:  []string{"/bin/sh", "-c"},
	Cmd:         []string{"echo hi"},
	ExtraLayers: []map[string]string{{"srv/a.txt": "a"}, {"srv/b.txt": "b"}},
}

// startImageDaemon starts berthd with the given registries.conf and
// drop-ins.
func startImageDaemon(t *testing.T, registriesConf string, dropIns map[string]string) *testutil.Daemon {
	t.Helper()
	d := testutil.NewDaemon(t, testutil.DaemonOptions{BinDir: binDir, DropIns: dropIns})
	d.WriteRegistriesConf(t, registriesConf)
	d.Start(t)
	return d
}

// rewrite is a registries.conf sending prefix to host over plain HTTP.
func rewrite(prefix, host string) string {
	return fmt.Sprintf("[[registry]]\nprefix = %q\nlocation = %q\ninsecure = true\n", prefix, host)
}

func imgCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func pullImage(t *testing.T, d *testutil.Daemon, ref string, auth *runtimeapi.AuthConfig) (string, error) {
	t.Helper()
	resp, err := d.Images.PullImage(imgCtx(t, time.Minute), &runtimeapi.PullImageRequest{
		Image: &runtimeapi.ImageSpec{Image: ref}, Auth: auth,
	})
	return resp.GetImageRef(), err
}

func mustPull(t *testing.T, d *testutil.Daemon, ref string) string {
	t.Helper()
	id, err := pullImage(t, d, ref, nil)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	return id
}

func imageStatus(t *testing.T, d *testutil.Daemon, ref string, verbose bool) *runtimeapi.ImageStatusResponse {
	t.Helper()
	resp, err := d.Images.ImageStatus(imgCtx(t, 10*time.Second), &runtimeapi.ImageStatusRequest{
		Image: &runtimeapi.ImageSpec{Image: ref}, Verbose: verbose,
	})
	if err != nil {
		t.Fatalf("image status %s: %v", ref, err)
	}
	return resp
}

func removeImage(t *testing.T, d *testutil.Daemon, ref string) error {
	t.Helper()
	_, err := d.Images.RemoveImage(imgCtx(t, 10*time.Second), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	return err
}

func listImages(t *testing.T, d *testutil.Daemon, filter string) []*runtimeapi.Image {
	t.Helper()
	req := &runtimeapi.ListImagesRequest{}
	if filter != "" {
		req.Filter = &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: filter}}
	}
	resp, err := d.Images.ListImages(imgCtx(t, 10*time.Second), req)
	if err != nil {
		t.Fatalf("list images: %v", err)
	}
	return resp.Images
}

// expectCode checks a gRPC error's code and that its message holds every
// one of parts.
func expectCode(t *testing.T, err error, code codes.Code, parts ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("want %v error, got success", code)
		return
	}
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Errorf("code = %v, want %v (%v)", st.Code(), code, err)
	}
	for _, p := range parts {
		if !strings.Contains(st.Message(), p) {
			t.Errorf("error %q does not mention %q", st.Message(), p)
		}
	}
}

// blobGETs counts blob downloads in a registry's request log.
func blobGETs(reg *testutil.Registry) int {
	n := 0
	for _, r := range reg.RequestLog() {
		if strings.HasPrefix(r, "GET ") && strings.Contains(r, "/blobs/") {
			n++
		}
	}
	return n
}

// stillServing checks that berthd answers after a failure.
func stillServing(t *testing.T, d *testutil.Daemon) {
	t.Helper()
	if _, err := d.Runtime.Version(imgCtx(t, 5*time.Second), &runtimeapi.VersionRequest{}); err != nil {
		t.Fatalf("berthd stopped serving: %v", err)
	}
	if exited, err := d.Exited(); exited {
		t.Fatalf("berthd exited: %v", err)
	}
}

// storageRecords reads containers/storage's own records of the daemon
// (whatever the driver) without opening the store.
type storageRecords struct {
	layers     []struct{ ID, Parent string }
	images     []struct{ ID, Layer string }
	containers []struct{ ID, Layer string }
}

func readStorage(t *testing.T, root string) storageRecords {
	t.Helper()
	var r storageRecords
	load := func(pattern string, v any) {
		files, _ := filepath.Glob(filepath.Join(root, pattern))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil || len(b) == 0 {
				continue
			}
			if err := json.Unmarshal(b, v); err != nil {
				t.Fatalf("parse %s: %v", f, err)
			}
		}
	}
	load("*-layers/layers.json", &r.layers)
	load("*-images/images.json", &r.images)
	load("*-containers/containers.json", &r.containers)
	return r
}

// assertClean checks that storage holds want images, no layer nothing
// refers to, and no pull staging files. A pull abandoned by its caller
// winds down in the background, so it allows a few seconds for that.
func assertClean(t *testing.T, d *testutil.Daemon, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		problems := storageProblems(t, filepath.Join(d.Dir, "storage"), want)
		if len(problems) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, p := range problems {
				t.Error(p)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func storageProblems(t *testing.T, root string, want int) []string {
	var problems []string
	r := readStorage(t, root)
	if len(r.images) != want {
		problems = append(problems, fmt.Sprintf("storage holds %d images, want %d", len(r.images), want))
	}
	used := map[string]bool{}
	for _, l := range r.layers {
		used[l.Parent] = true
	}
	for _, i := range r.images {
		used[i.Layer] = true
	}
	for _, c := range r.containers {
		used[c.Layer] = true
	}
	for _, l := range r.layers {
		if !used[l.ID] {
			problems = append(problems, fmt.Sprintf("layer %s left without an image", l.ID))
		}
	}
	if left, _ := os.ReadDir(filepath.Join(root, "berth-tmp")); len(left) > 0 {
		problems = append(problems, fmt.Sprintf("pull staging files left: %v", left))
	}
	return problems
}

func TestImagePullRewriteStatusList(t *testing.T) {
	t.Parallel()
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	digest := reg.Push(t, "library/busybox:latest", testutil.BusyboxImage(t, imgSpec))
	conf := "unqualified-search-registries = [\"docker.io\"]\n" + rewrite("docker.io", reg.Host)
	d := startImageDaemon(t, conf, nil)

	id := mustPull(t, d, "docker.io/library/busybox:latest")
	if reg.Requests() == 0 {
		t.Fatal("the rewritten registry saw no request")
	}
	// The short name resolves through docker.io, which is rewritten.
	if again := mustPull(t, d, "busybox"); again != id {
		t.Errorf("short-name pull gave %s, want %s", again, id)
	}
	if byDigest := mustPull(t, d, "docker.io/library/busybox@"+digest.String()); byDigest != id {
		t.Errorf("pull by digest gave %s, want %s", byDigest, id)
	}

	for _, ref := range []string{"busybox", "busybox:latest", "docker.io/library/busybox:latest", id, "sha256:" + id, id[:12],
		"docker.io/library/busybox@" + digest.String()} {
		img := imageStatus(t, d, ref, false).GetImage()
		if img.GetId() != id {
			t.Errorf("status %s: id %q, want %s", ref, img.GetId(), id)
		}
	}
	resp := imageStatus(t, d, "busybox", true)
	img := resp.Image
	if len(img.RepoTags) != 1 || img.RepoTags[0] != "docker.io/library/busybox:latest" {
		t.Errorf("repo tags = %v", img.RepoTags)
	}
	if !containsStr(img.RepoDigests, "docker.io/library/busybox@"+digest.String()) {
		t.Errorf("repo digests = %v, want the manifest digest %s", img.RepoDigests, digest)
	}
	if img.Size == 0 || img.GetUid().GetValue() != 1000 || img.Username != "" || img.Pinned {
		t.Errorf("image = %+v", img)
	}
	var info struct {
		ImageSpec struct {
			Config struct {
				Env        []string
				WorkingDir string
				Entrypoint []string
			}
		}
	}
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil {
		t.Fatalf("verbose info %q: %v", resp.Info["info"], err)
	}
	if info.ImageSpec.Config.WorkingDir != "/srv" || !containsStr(info.ImageSpec.Config.Env, "GREETING=hello") {
		t.Errorf("verbose image config = %+v", info.ImageSpec.Config)
	}
	if st := imageStatus(t, d, "docker.io/library/nothere:1", false); st.Image != nil {
		t.Errorf("status of a missing image = %v, want none", st.Image)
	}
	_, err := d.Images.ImageStatus(imgCtx(t, 5*time.Second), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "Not//Valid"}})
	expectCode(t, err, codes.InvalidArgument, "Not//Valid")

	if all := listImages(t, d, ""); len(all) != 1 || all[0].Id != id {
		t.Errorf("list = %v", all)
	}
	if got := listImages(t, d, "busybox"); len(got) != 1 {
		t.Errorf("filtered list = %v", got)
	}
	if got := listImages(t, d, "docker.io/library/other:1"); len(got) != 0 {
		t.Errorf("filtered list of a missing image = %v", got)
	}
	// Progress is logged at info.
	for _, want := range []string{"pulled blob", "pulled image", "layers=3"} {
		if !strings.Contains(d.Log(), want) {
			t.Errorf("daemon log lacks %q", want)
		}
	}
	fs, err := d.Images.ImageFsInfo(imgCtx(t, 10*time.Second), &runtimeapi.ImageFsInfoRequest{})
	if err != nil {
		t.Fatalf("image fs info: %v", err)
	}
	ifs := fs.ImageFilesystems[0]
	if ifs.FsId.Mountpoint != filepath.Join(d.Dir, "storage") || ifs.UsedBytes.Value < uint64(img.Size)/2 || ifs.InodesUsed.Value < 50 {
		t.Errorf("image filesystem = %v (image size %d)", ifs, img.Size)
	}
	if len(fs.ContainerFilesystems) != 1 || fs.ContainerFilesystems[0].FsId.Mountpoint != ifs.FsId.Mountpoint {
		t.Errorf("container filesystems = %v", fs.ContainerFilesystems)
	}
}

func containsStr(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestImageMirrors(t *testing.T) {
	t.Parallel()
	img := testutil.BusyboxImage(t, testutil.ImageSpec{})
	primary := testutil.StartRegistry(t, testutil.RegistryOptions{Handler: testutil.RefuseAll})
	broken := testutil.StartRegistry(t, testutil.RegistryOptions{Handler: testutil.RefuseAll})
	good := testutil.StartRegistry(t, testutil.RegistryOptions{})
	good.Push(t, "team/app:1", img)
	conf := fmt.Sprintf(`[[registry]]
prefix = "registry.example.com"
location = %q
insecure = true
[[registry.mirror]]
location = %q
insecure = true
[[registry.mirror]]
location = %q
insecure = true
`, primary.Host, broken.Host, good.Host)
	d := startImageDaemon(t, conf, nil)
	mustPull(t, d, "registry.example.com/team/app:1")
	if broken.Requests() == 0 {
		t.Error("the first mirror was not tried")
	}
	if primary.Requests() != 0 {
		t.Errorf("the primary location was contacted %d times although a mirror served the image", primary.Requests())
	}
	if st := imageStatus(t, d, "registry.example.com/team/app:1", false); st.Image == nil {
		t.Error("the image is not named after the logical registry")
	}
}

func TestImageTLSAndAuth(t *testing.T) {
	t.Parallel()
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{TLS: true, Username: "alice", Password: "s3cret"})
	reg.Push(t, "app:1", testutil.BusyboxImage(t, testutil.ImageSpec{}))
	untrusted := testutil.StartRegistry(t, testutil.RegistryOptions{TLS: true})
	untrusted.Push(t, "app:1", testutil.BusyboxImage(t, testutil.ImageSpec{}))
	d := startImageDaemon(t, reg.RegistriesConf(), map[string]string{
		"20-certs.toml": fmt.Sprintf("[berth.image]\ncerts_dir = %q\n", reg.CertsDir),
	})
	ref := reg.Ref("app:1")

	_, err := pullImage(t, d, ref, nil)
	expectCode(t, err, codes.Unauthenticated, ref)
	_, err = pullImage(t, d, ref, &runtimeapi.AuthConfig{Username: "alice", Password: "wrong"})
	expectCode(t, err, codes.Unauthenticated, ref, "credentials")
	if _, err := pullImage(t, d, ref, &runtimeapi.AuthConfig{Username: "alice", Password: "s3cret"}); err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
	if err := removeImage(t, d, ref); err != nil {
		t.Fatal(err)
	}
	basic := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	if _, err := pullImage(t, d, ref, &runtimeapi.AuthConfig{Auth: basic}); err != nil {
		t.Fatalf("pull with auth: %v", err)
	}
	assertClean(t, d, 1)

	// A registry whose CA is not in certs_dir is refused.
	_, err = pullImage(t, d, untrusted.Ref("app:1"), nil)
	expectCode(t, err, codes.FailedPrecondition, untrusted.Ref("app:1"), "certificate")
	stillServing(t, d)
}

// TestImageAuthFileAndInsecureKey uses global_auth_file for credentials,
// and berth's own insecure_registries (registries.conf says nothing) to
// reach a plain-HTTP registry.
func TestImageAuthFileAndInsecureKey(t *testing.T) {
	t.Parallel()
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{Username: "bob", Password: "pw"})
	reg.Push(t, "app:1", testutil.BusyboxImage(t, testutil.ImageSpec{}))
	authFile := filepath.Join(t.TempDir(), "auth.json")
	auth := fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, reg.Host, base64.StdEncoding.EncodeToString([]byte("bob:pw")))
	if err := os.WriteFile(authFile, []byte(auth), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startImageDaemon(t, "", map[string]string{
		"20-auth.toml": fmt.Sprintf("[berth.image]\nglobal_auth_file = %q\ninsecure_registries = [%q]\n", authFile, reg.Host),
	})
	mustPull(t, d, reg.Ref("app:1"))
}

func TestImageBlockedAndPolicy(t *testing.T) {
	t.Parallel()
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	reg.Push(t, "app:1", testutil.BusyboxImage(t, testutil.ImageSpec{}))
	blocked := fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\nblocked = true\n", reg.Host)
	d := startImageDaemon(t, blocked, nil)
	ref := reg.Ref("app:1")

	_, err := pullImage(t, d, ref, nil)
	expectCode(t, err, codes.FailedPrecondition, ref, "blocked")
	if reg.Requests() != 0 {
		t.Errorf("a blocked registry was contacted %d times", reg.Requests())
	}

	d.WriteRegistriesConf(t, reg.RegistriesConf())
	reloadAndWait(t, d)
	d.WritePolicy(t, `{"default":[{"type":"reject"}]}`)
	_, err = pullImage(t, d, ref, nil)
	expectCode(t, err, codes.FailedPrecondition, ref, "rejected", "policy")
	assertClean(t, d, 0)

	// policy.json is read by every pull: no reload needed.
	d.WritePolicy(t, `{"default":[{"type":"insecureAcceptAnything"}]}`)
	mustPull(t, d, ref)
}

// reloadAndWait sends SIGHUP and waits until berthd logs the reload.
func reloadAndWait(t *testing.T, d *testutil.Daemon) {
	t.Helper()
	before := strings.Count(d.Log(), "reload: done")
	d.Signal(t, syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(d.Log(), "reload: done") == before {
		if time.Now().After(deadline) {
			t.Fatal("berthd did not log the reload")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestImageReloadRegistriesConf(t *testing.T) {
	t.Parallel()
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	reg.Push(t, "library/busybox:latest", testutil.BusyboxImage(t, testutil.ImageSpec{}))
	// docker.io is blocked (and so never looked up) until the reload.
	d := startImageDaemon(t, "[[registry]]\nprefix = \"docker.io\"\nlocation = \"127.0.0.1:1\"\nblocked = true\n", nil)
	_, err := pullImage(t, d, "docker.io/library/busybox:latest", nil)
	expectCode(t, err, codes.FailedPrecondition, "blocked")

	d.WriteRegistriesConf(t, rewrite("docker.io", reg.Host))
	// Without a SIGHUP the cached registries.conf still applies.
	_, err = pullImage(t, d, "docker.io/library/busybox:latest", nil)
	expectCode(t, err, codes.FailedPrecondition, "blocked")
	reloadAndWait(t, d)
	mustPull(t, d, "docker.io/library/busybox:latest")
}
