package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestStreamPortForward: two ports of a pod, several connections at once,
// each fetching a page from busybox httpd listening on the pod's
// loopback; a port with no listener gets an error on its error stream
// and the connection serves the next request.
func TestStreamPortForward(t *testing.T) {
	e := startStreamEnv(t)
	_, info := podStatus(t, e.d, e.pod)
	www := t.TempDir()
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("hello from the pod\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, port := range []string{"8080", "8081"} {
		srv := exec.Command("nsenter", "--net="+info.NetNS, "/bin/busybox", "httpd", "-f", "-p", "127.0.0.1:"+port, "-h", www)
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = srv.Process.Kill()
			_ = srv.Wait()
		})
	}
	fwd := e.forwardPorts(t, "0:8080", "0:8081")
	for _, p := range fwd {
		page := fmt.Sprintf("http://127.0.0.1:%d/index.html", p.Local)
		eventually(t, "httpd", func() bool {
			r, err := http.Get(page)
			if err == nil {
				r.Body.Close()
			}
			return err == nil && r.StatusCode == http.StatusOK
		})
		getPages(t, page, 5)
	}

	// A raw SPDY connection: a refused port, then a good one.
	resp, err := e.d.Runtime.PortForward(ctxT(t, 10*time.Second), &runtimeapi.PortForwardRequest{PodSandboxId: e.pod})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(resp.GetUrl())
	transport, upgrader, err := spdy.RoundTripperFor(&rest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	conn, _, err := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, "POST", u).Dial(portforward.PortForwardProtocolV1Name)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pair := func(id, port string) (errStream, data io.ReadWriteCloser) {
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
		if err != nil {
			t.Fatal(err)
		}
		return es, ds
	}
	es, ds := pair("1", "8099")
	if msg, _ := io.ReadAll(es); !strings.Contains(string(msg), "connection refused") {
		t.Errorf("error stream of a port with no listener: %q", msg)
	}
	ds.Close()
	_, ds = pair("2", "8080")
	io.WriteString(ds, "GET /index.html HTTP/1.0\r\n\r\n")
	if b, _ := io.ReadAll(ds); !strings.Contains(string(b), "hello from the pod") {
		t.Errorf("after a refused port: %q", b)
	}
}

// TestStreamPortForwardContainer fetches a page from busybox httpd run as
// a container of the pod.
func TestStreamPortForwardContainer(t *testing.T) {
	e := startStreamEnv(t)
	e.container(t, "web", []string{"/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"}, nil)
	fwd := e.forwardPorts(t, "0:8080")
	page := fmt.Sprintf("http://127.0.0.1:%d/index.html", fwd[0].Local)
	eventually(t, "httpd", func() bool {
		r, err := http.Get(page)
		if err == nil {
			r.Body.Close()
		}
		return err == nil && r.StatusCode == http.StatusOK
	})
	getPages(t, page, 5)
}
