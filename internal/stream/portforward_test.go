package stream

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// testNetNS creates a network namespace with lo up and busybox httpd
// serving dir on 127.0.0.1 at each port; cleanup removes it all.
func testNetNS(t *testing.T, ports ...int) string {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip")
	}
	name := fmt.Sprintf("bst%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v\n%s", err, out)
	}
	www := t.TempDir()
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("hello from the pod\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		cmd := exec.Command("ip", "netns", "exec", name, "/bin/busybox", "httpd", "-f", "-p", fmt.Sprintf("127.0.0.1:%d", p), "-h", www)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
	path := "/run/netns/" + name
	// Wait for the servers to listen.
	for _, p := range ports {
		waitFor(t, 10*time.Second, "httpd", func() bool {
			out, _ := exec.Command("ip", "netns", "exec", name, "/bin/busybox", "wget", "-q", "-O", "-",
				fmt.Sprintf("http://127.0.0.1:%d/", p)).Output()
			return strings.Contains(string(out), "hello")
		})
	}
	return path
}

// Several ports, several concurrent connections each, through the client
// kubectl uses.
func TestPortForward(t *testing.T) {
	needTools(t)
	ns := testNetNS(t, 18080, 18081)
	s, _ := newTestServer(t, fakePods{"p1": ns})
	resp, err := s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(resp.Url)
	transport, upgrader, err := spdy.RoundTripperFor(&rest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, "POST", u)
	stop, ready := make(chan struct{}), make(chan struct{})
	pf, err := portforward.New(dialer, []string{"0:18080", "0:18081"}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- pf.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("port-forward: %v", err)
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) != 2 {
		t.Fatalf("ports %v: %v", ports, err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
			r, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/index.html", ports[i%2].Local))
			if err != nil {
				errs <- err
				return
			}
			defer r.Body.Close()
			b, _ := io.ReadAll(r.Body)
			if string(b) != "hello from the pod\n" {
				errs <- fmt.Errorf("got %q", b)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	close(stop)
	<-done
	waitFor(t, 10*time.Second, "sessions to end", func() bool { return s.Sessions() == 0 })
}

// A port with no listener gets an error on its error stream; the
// connection (other streams) goes on.
func TestPortForwardNoListener(t *testing.T) {
	needTools(t)
	ns := testNetNS(t, 18082)
	s, _ := newTestServer(t, fakePods{"p1": ns})
	resp, err := s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(resp.Url)
	transport, upgrader, err := spdy.RoundTripperFor(&rest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	conn, _, err := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, "POST", u).Dial(portforward.PortForwardProtocolV1Name)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// pair opens the error and data streams of one request. The data
	// stream may be reset by the server as soon as the dial has failed,
	// before CreateStream returns: that is dataErr.
	pair := func(id, port string) (errStream, data io.ReadWriteCloser, dataErr error) {
		h := http.Header{}
		h.Set("streamType", "error")
		h.Set("port", port)
		h.Set("requestID", id)
		es, err := conn.CreateStream(h)
		if err != nil {
			t.Fatal(err)
		}
		es.Close()
		h.Set("streamType", "data")
		ds, err := conn.CreateStream(h)
		return es, ds, err
	}
	es, ds, _ := pair("1", "18099")
	msg, _ := io.ReadAll(es)
	if !strings.Contains(string(msg), "connection refused") {
		t.Errorf("error stream: %q", msg)
	}
	if ds != nil {
		ds.Close()
	}

	es, ds, err = pair("2", "18082")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(ds, "GET /index.html HTTP/1.0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	r, err := http.ReadResponse(bufio.NewReader(ds), nil)
	if err != nil {
		t.Fatalf("response after a failed port: %v", err)
	}
	b, _ := io.ReadAll(r.Body)
	if string(b) != "hello from the pod\n" {
		t.Errorf("body %q", b)
	}
	if msg, _ := io.ReadAll(es); len(msg) != 0 {
		t.Errorf("error stream of a good port: %q", msg)
	}
}

func TestPortForwardRefused(t *testing.T) {
	needTools(t)
	s, _ := newTestServer(t, fakePods{})
	if _, err := s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "nosuch"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown pod: %v", err)
	}
	if _, err := s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "x", Port: []int32{70000}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad port: %v", err)
	}
}

// A client that vanishes while the pod's side is silent ends the session.
func TestPortForwardClientGone(t *testing.T) {
	needTools(t)
	ns := testNetNS(t)
	nc := exec.Command("ip", "netns", "exec", filepath.Base(ns), "/bin/busybox", "nc", "-l", "-p", "18084", "127.0.0.1")
	// A stdin that never ends: at its end nc would hang up.
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdinW.Close()
	nc.Stdin = stdinR
	err = nc.Start()
	stdinR.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = nc.Process.Kill()
		_ = nc.Wait()
	}()
	waitFor(t, 10*time.Second, "nc to listen", func() bool {
		out, _ := exec.Command("ip", "netns", "exec", filepath.Base(ns), "cat", "/proc/net/tcp").Output()
		return strings.Contains(string(out), fmt.Sprintf(":%04X 00000000:0000 0A", 18084))
	})
	s, _ := newTestServer(t, fakePods{"p1": ns})
	base := current(t)
	resp, err := s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(resp.Url)
	transport, upgrader, err := spdy.RoundTripperFor(&rest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	conn, _, err := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, "POST", u).Dial(portforward.PortForwardProtocolV1Name)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("port", "18084")
	h.Set("requestID", "1")
	h.Set("streamType", "error")
	if _, err := conn.CreateStream(h); err != nil {
		t.Fatal(err)
	}
	h.Set("streamType", "data")
	ds, err := conn.CreateStream(h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(ds, "hi\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the session", func() bool { return s.Sessions() == 1 })
	conn.Close()
	waitFor(t, 10*time.Second, "the session to end", func() bool { return s.Sessions() == 0 })
	settled(t, base)
}
