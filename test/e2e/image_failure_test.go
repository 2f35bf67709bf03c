package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// Bad input and failures of pulls: each gives a clear gRPC error naming
// the image and its cause, leaves nothing behind, and berthd keeps serving.

func TestImageBadInput(t *testing.T) {
	t.Parallel()
	img := testutil.BusyboxImage(t, imgSpec)
	corrupt := testutil.StartRegistry(t, testutil.RegistryOptions{Handler: testutil.CorruptBlobs})
	corrupt.Push(t, "app:1", img)
	refusing := testutil.StartRegistry(t, testutil.RegistryOptions{Handler: testutil.RefuseAll})
	refusing.Push(t, "app:1", img)
	good := testutil.StartRegistry(t, testutil.RegistryOptions{})
	good.Push(t, "app:1", img)
	dead := deadAddress(t)
	conf := "unqualified-search-registries = [\"one.example\", \"two.example\"]\n" +
		corrupt.RegistriesConf() + refusing.RegistriesConf() + good.RegistriesConf() +
		fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", dead)
	d := startImageDaemon(t, conf, nil)

	for _, bad := range []string{"UPPER/case:1", "a//b", "busybox:tag:tag", "sha256:" + strings.Repeat("a", 64), "ftp://busybox"} {
		_, err := pullImage(t, d, bad, nil)
		expectCode(t, err, codes.InvalidArgument, bad)
	}
	_, err := pullImage(t, d, "", nil)
	expectCode(t, err, codes.InvalidArgument)
	_, err = pullImage(t, d, "busybox", nil)
	expectCode(t, err, codes.FailedPrecondition, "busybox", "ambiguous")

	_, err = pullImage(t, d, refusing.Ref("app:1"), nil)
	expectCode(t, err, codes.Unavailable, refusing.Ref("app:1"), "500")
	_, err = pullImage(t, d, dead+"/app:1", nil)
	expectCode(t, err, codes.Unavailable, dead+"/app:1", "connection refused")
	_, err = pullImage(t, d, good.Ref("app:404"), nil)
	expectCode(t, err, codes.NotFound, good.Ref("app:404"))
	_, err = pullImage(t, d, corrupt.Ref("app:1"), nil)
	if err == nil || !strings.Contains(err.Error(), corrupt.Ref("app:1")) || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("corrupt blob: %v, want an error naming the image and the digest mismatch", err)
	}
	assertClean(t, d, 0)
	stillServing(t, d)
	mustPull(t, d, good.Ref("app:1"))
}

// deadAddress returns a 127.0.0.1 address nothing listens on.
func deadAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestImageCorruptLayer corrupts only a layer (not the config), so the
// failure comes after other layers were committed: none may stay.
func TestImageCorruptLayer(t *testing.T) {
	t.Parallel()
	img := testutil.BusyboxImage(t, imgSpec)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	last, _ := layers[len(layers)-1].Digest()
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{Handler: onlyPath(last.String(), testutil.CorruptBlobs)})
	reg.Push(t, "app:1", img)
	d := startImageDaemon(t, reg.RegistriesConf(), nil)
	_, err = pullImage(t, d, reg.Ref("app:1"), nil)
	if err == nil || !strings.Contains(err.Error(), reg.Ref("app:1")) {
		t.Fatalf("corrupt layer: %v, want an error naming the image", err)
	}
	t.Logf("corrupt layer: %v", err)
	assertClean(t, d, 0)
	t.Logf("orphan layers removed: %d", strings.Count(d.Log(), "removed layer left by a failed pull"))
}

func TestImagePullDedupe(t *testing.T) {
	t.Parallel()
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{Handler: testutil.StallBlobs(time.Second)})
	img := testutil.BusyboxImage(t, imgSpec)
	reg.Push(t, "app:1", img)
	d := startImageDaemon(t, reg.RegistriesConf(), nil)
	ref := reg.Ref("app:1")

	// Three callers: the first gives up after 300ms, which must not
	// cancel the shared download for the other two.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	ids := make([]string, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			timeout := time.Minute
			if i == 0 {
				timeout = 300 * time.Millisecond
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			resp, err := d.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
			ids[i], errs[i] = resp.GetImageRef(), err
		}()
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	expectCode(t, errs[0], codes.DeadlineExceeded)
	if errs[1] != nil || errs[2] != nil || ids[1] == "" || ids[1] != ids[2] {
		t.Fatalf("shared pulls: %v, %v (%q, %q)", errs[1], errs[2], ids[1], ids[2])
	}
	layers, _ := img.Layers()
	if got, want := blobGETs(reg), len(layers)+1; got != want {
		t.Errorf("blob downloads = %d, want %d (one pull): %v", got, want, reg.RequestLog())
	}
	if !strings.Contains(d.Log(), "joining the pull already in progress") {
		t.Error("daemon log does not show the joined pull")
	}
}

func TestImagePullTimeouts(t *testing.T) {
	t.Parallel()
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{Handler: testutil.StallBlobs(time.Minute)})
	reg.Push(t, "app:1", testutil.BusyboxImage(t, testutil.ImageSpec{}))
	silent := silentRegistry(t)
	conf := reg.RegistriesConf() + fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", silent)
	d := startImageDaemon(t, conf, map[string]string{
		"30-progress.toml": "[berth.image]\npull_progress_timeout = \"2s\"\n",
	})

	start := time.Now()
	_, err := pullImage(t, d, reg.Ref("app:1"), nil)
	expectCode(t, err, codes.DeadlineExceeded, reg.Ref("app:1"), "no progress")
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("stalled pull took %v to abort", took)
	}
	// A registry that accepts connections and never answers times out too.
	_, err = pullImage(t, d, silent+"/app:1", nil)
	expectCode(t, err, codes.DeadlineExceeded, silent+"/app:1")

	// The caller's deadline is honoured even when shorter.
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = d.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: reg.Ref("app:1")}})
	expectCode(t, err, codes.DeadlineExceeded)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("deadline of 700ms answered after %v", took)
	}
	assertClean(t, d, 0)
	stillServing(t, d)
}

// silentRegistry accepts TCP connections and never answers.
func silentRegistry(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().String()
}

func TestImageDiskFull(t *testing.T) {
	t.Parallel()
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	reg.Push(t, "app:1", testutil.BusyboxImage(t, imgSpec))
	d := testutil.NewDaemon(t, testutil.DaemonOptions{BinDir: binDir})
	d.WriteRegistriesConf(t, reg.RegistriesConf())
	root := filepath.Join(d.Dir, "storage")
	if err := os.MkdirAll(root, 0o700); err != nil {
		t.Fatal(err)
	}
	// testutil's cleanup stops berthd before unmounting everything
	// under its directory.
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "berth-test-full", root).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	d.Start(t)
	_, err := pullImage(t, d, reg.Ref("app:1"), nil)
	expectCode(t, err, codes.ResourceExhausted, reg.Ref("app:1"), "no space left")
	assertClean(t, d, 0)
	stillServing(t, d)
}

// onlyPath applies a fault injector to the requests whose path holds
// substr (one blob, say) and serves the rest untouched.
func onlyPath(substr string, inject func(http.Handler) http.Handler) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		faulty := inject(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, substr) {
				faulty.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
