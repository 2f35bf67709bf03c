package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	utilexec "k8s.io/utils/exec"

	"github.com/berth-cri/berth/internal/testutil"
)

// streamEnv is a berthd with a CNI network, metrics on a unix socket, a
// pulled busybox image (with /www/index.html) and one ready pod.
type streamEnv struct {
	d       *testutil.Daemon
	metrics string
	ref     string
	pod     string
	podCfg  *runtimeapi.PodSandboxConfig
}

func startStreamEnv(t *testing.T) *streamEnv {
	t.Helper()
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	reg.Push(t, "stream/busybox:1", testutil.BusyboxImage(t, testutil.ImageSpec{
		ExtraLayers: []map[string]string{{"www/index.html": "hello from the pod\n"}},
	}))
	e := &streamEnv{ref: reg.Ref("stream/busybox:1")}
	e.d = testutil.NewDaemon(t, testutil.DaemonOptions{BinDir: binDir})
	e.metrics = filepath.Join(e.d.Dir, "metrics.sock")
	e.d.WriteDropIn(t, "50-metrics.toml", fmt.Sprintf("[berth.metrics]\nenable_metrics = true\nmetrics_socket = %q\n", e.metrics))
	e.d.WriteRegistriesConf(t, reg.RegistriesConf())
	e.d.Start(t)
	tn := newTestNet(t, e.d.Dir)
	t.Cleanup(func() { removeAllPods(e.d) })
	writeConf(t, e.d, "10-test.conflist", tn.conflist("bridge"))
	waitNetworkReady(t, e.d, true)
	if _, err := e.d.Images.PullImage(ctxT(t, 2*time.Minute), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: e.ref}}); err != nil {
		t.Fatal(err)
	}
	e.podCfg = podConfig("stream")
	e.pod = runPod(t, e.d, e.podCfg)
	return e
}

// container creates and starts a container running args; mutate may
// change its config. Skips while berthd has no container support.
func (e *streamEnv) container(t *testing.T, name string, args []string, mutate func(*runtimeapi.ContainerConfig)) string {
	t.Helper()
	ctx := ctxT(t, time.Minute)
	cfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: e.ref},
		Command:  args,
		LogPath:  name + ".log",
	}
	if mutate != nil {
		mutate(cfg)
	}
	resp, err := e.d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: e.pod, SandboxConfig: e.podCfg, Config: cfg})
	if status.Code(err) == codes.Unimplemented {
		t.Skip("berthd has no container support yet")
	}
	if err != nil {
		t.Fatalf("CreateContainer %s: %v", name, err)
	}
	if _, err := e.d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: resp.GetContainerId()}); err != nil {
		t.Fatalf("StartContainer %s: %v", name, err)
	}
	return resp.GetContainerId()
}

// execURL asks berthd for an exec URL over the CRI.
func (e *streamEnv) execURL(t *testing.T, req *runtimeapi.ExecRequest) string {
	t.Helper()
	resp, err := e.d.Runtime.Exec(ctxT(t, 10*time.Second), req)
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	return resp.GetUrl()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func exitStatus(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ee utilexec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("not an exit error: %v", err)
	}
	return ee.ExitStatus()
}

// forwardPorts starts client-go's port forwarder (what kubectl
// port-forward runs) to ports of the pod and returns the local ports.
func (e *streamEnv) forwardPorts(t *testing.T, ports ...string) []portforward.ForwardedPort {
	t.Helper()
	resp, err := e.d.Runtime.PortForward(ctxT(t, 10*time.Second), &runtimeapi.PortForwardRequest{PodSandboxId: e.pod})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(resp.GetUrl())
	transport, upgrader, err := spdy.RoundTripperFor(&rest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, "POST", u)
	stop, ready := make(chan struct{}), make(chan struct{})
	pf, err := portforward.New(dialer, ports, stop, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- pf.ForwardPorts() }()
	t.Cleanup(func() {
		close(stop)
		<-done
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("port-forward: %v", err)
	}
	fwd, err := pf.GetPorts()
	if err != nil {
		t.Fatal(err)
	}
	return fwd
}

// getPages fetches url n times at once and checks the body.
func getPages(t *testing.T, page string, n int) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := client.Get(page)
			if err != nil {
				t.Error(err)
				return
			}
			defer r.Body.Close()
			if b, _ := io.ReadAll(r.Body); string(b) != "hello from the pod\n" {
				t.Errorf("page %q", b)
			}
		}()
	}
	wg.Wait()
}

// berthdCounts are what exec sessions must give back: goroutines (from
// the metrics), open fds and child processes of berthd.
type berthdCounts struct{ goroutines, fds, children int }

func (e *streamEnv) counts(t *testing.T) berthdCounts {
	t.Helper()
	pid := e.d.Cmd.Process.Pid
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	c := berthdCounts{fds: len(fds)}
	c.goroutines = e.goroutines(t)
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "stat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			c.children++
		}
	}
	return c
}

// goroutines reads go_goroutines from berthd's metrics, on a connection
// that is not kept alive (an idle one would hold a goroutine and an fd).
func (e *streamEnv) goroutines(t *testing.T) int {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", e.metrics)
		},
	}}
	resp, err := client.Get("http://berth/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "go_goroutines "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("go_goroutines %q", v)
			}
			return int(n)
		}
	}
	t.Fatal("no go_goroutines in the metrics")
	return 0
}

// children lists berthd's child processes with their command lines.
func (e *streamEnv) children(t *testing.T) string {
	var b strings.Builder
	pid := strconv.Itoa(e.d.Cmd.Process.Pid)
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		st, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "stat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:]))
		if len(f) > 1 && f[1] == pid {
			cmd, _ := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
			fmt.Fprintf(&b, "%s %s %q\n", ent.Name(), f[0], bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))
		}
	}
	return b.String()
}
