package e2e

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/client-go/tools/remotecommand"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/container"
	"github.com/berth-cri/berth/internal/testutil"
)

// kubeletMaxMsg is what the kubelet and crictl accept by default.
const kubeletMaxMsg = 16 << 20

// TestHostileOversizedRequests sends 10 MB of labels, 20,000
// annotations and a 1 MB command line. Metadata beyond the Kubernetes
// API's own limit (256 KiB per object) is refused with InvalidArgument
// naming the limit; the command line gets a clear answer; no later List
// carries any of it; and berthd's memory comes back to within 10 MB of
// its baseline.
func TestHostileOversizedRequests(t *testing.T) {
	e := startHostileEnv(t)
	warm := e.run(t, e.config("warm", "sleep", "1000"))
	e.exec(t, warm, 10, "true")
	base := rssKB(e.d.Cmd.Process.Pid)
	tenMB := map[string]string{"big": strings.Repeat("v", 10<<20)}
	many := map[string]string{}
	for i := 0; i < 20000; i++ {
		many[fmt.Sprintf("example.com/key-%05d", i)] = "value-0123456789"
	}
	for _, tc := range []struct {
		name                string
		labels, annotations map[string]string
	}{
		{"10 MB of labels", tenMB, nil},
		{"20,000 annotations", nil, many},
	} {
		t.Run("pod with "+tc.name, func(t *testing.T) {
			cfg := podConfig("big")
			cfg.Labels, cfg.Annotations = tc.labels, tc.annotations
			_, err := e.d.Runtime.RunPodSandbox(ctxT(t, time.Minute), &runtimeapi.RunPodSandboxRequest{Config: cfg})
			expectCode(t, err, codes.InvalidArgument, "limit of 262144 bytes", "max_metadata_size")
		})
		t.Run("container with "+tc.name, func(t *testing.T) {
			cfg := e.config("big", "true")
			cfg.Labels, cfg.Annotations = tc.labels, tc.annotations
			_, err := e.create(t, cfg)
			expectCode(t, err, codes.InvalidArgument, "limit of 262144 bytes", "max_metadata_size")
		})
	}
	t.Run("1 MB command line", func(t *testing.T) {
		cfg := e.config("longcmd", "sh", "-c", "true # "+strings.Repeat("x", 1<<20))
		id, err := e.create(t, cfg)
		if err == nil {
			_, err = e.d.Runtime.StartContainer(ctxT(t, time.Minute), &runtimeapi.StartContainerRequest{ContainerId: id})
			e.remove(t, id)
		}
		if err == nil {
			return // served
		}
		expectCode(t, err, codes.InvalidArgument, "argument")
	})
	pods, err := e.d.Runtime.ListPodSandbox(ctxT(t, time.Minute), &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(pods.GetItems()) != 1 {
		t.Errorf("pods after the oversized requests: %d, %v", len(pods.GetItems()), err)
	}
	assertRSSBack(t, e.d, base, "after oversized requests")
	assertNoPanic(t, e.d)
	e.stop(t, warm, 0)
	e.remove(t, warm)
	e.guard.assertUntouched(t)
}

// TestHostileExecSyncFlood runs ExecSync commands that write 300 MB,
// on one stream and on both (CVE-2022-1708 class). A client with the
// kubelet's 16 MiB limit gets the output truncated to fit, not a size
// error; and berthd's RSS comes back to within 10 MB of its baseline.
func TestHostileExecSyncFlood(t *testing.T) {
	e := startHostileEnv(t)
	id := e.run(t, e.config("flood", "sleep", "1000"))
	e.exec(t, id, 10, "true")
	base := rssKB(e.d.Cmd.Process.Pid)
	conn, err := grpc.NewClient("unix://"+e.d.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(kubeletMaxMsg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kubelet := runtimeapi.NewRuntimeServiceClient(conn)
	for _, tc := range []struct{ name, script string }{
		{"stdout", "yes | head -c 300000000"},
		{"stdout and stderr", "yes out | head -c 150000000 & yes err | head -c 150000000 >&2; wait"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := kubelet.ExecSync(ctxT(t, 2*time.Minute), &runtimeapi.ExecSyncRequest{
				ContainerId: id, Cmd: []string{"sh", "-c", tc.script}, Timeout: 90})
			if err != nil {
				t.Fatalf("ExecSync with a 16 MiB client: %v", err)
			}
			n := len(resp.GetStdout()) + len(resp.GetStderr())
			t.Logf("reply: %d bytes of stdout, %d of stderr, exit %d", len(resp.GetStdout()), len(resp.GetStderr()), resp.GetExitCode())
			if n != container.MaxExecOutput {
				t.Errorf("output %d bytes, want the cap %d", n, container.MaxExecOutput)
			}
			assertRSSBack(t, e.d, base, "after "+tc.name)
		})
	}
	// A streaming exec with a TTY: the output flows through berthd to
	// the client and none of it is kept. (berth streams a TTY at about
	// 0.5 MB/s today, so 3 MB rather than 300.)
	t.Run("streaming exec with a tty", func(t *testing.T) {
		resp, err := e.d.Runtime.Exec(ctxT(t, 10*time.Second), &runtimeapi.ExecRequest{
			ContainerId: id, Cmd: []string{"sh", "-c", "yes | head -c 3000000"}, Tty: true, Stdout: true})
		if err != nil {
			t.Fatal(err)
		}
		var n countingWriter
		start := time.Now()
		if err := testutil.StreamSPDY(ctxT(t, 2*time.Minute), resp.GetUrl(), remotecommand.StreamOptions{Stdout: &n, Tty: true}); err != nil {
			t.Fatalf("streaming exec: %v after %d bytes", err, n)
		}
		t.Logf("streamed %d bytes in %v", n, time.Since(start).Round(time.Millisecond))
		if n < 3000000 {
			t.Errorf("the client got %d bytes of 3000000", n)
		}
		assertRSSBack(t, e.d, base, "after a streaming exec with a tty")
	})
	// A container flooding its TTY: conmon copies it to the log, its
	// memory stays bounded.
	t.Run("container output through conmon", func(t *testing.T) {
		cfg := e.config("ttyflood", "sh", "-c", "yes | head -c 5000000; echo; echo flood-done; exec sleep 1000")
		cfg.Tty = true
		ctr := e.run(t, cfg)
		logPath := e.status(t, ctr).GetLogPath()
		conmon := conmonOf(t, e.d, ctr)
		deadline := time.Now().Add(2 * time.Minute)
		for !strings.Contains(tailOf(t, logPath), "flood-done") {
			if time.Now().After(deadline) {
				t.Fatal("the container's 5 MB did not reach its log")
			}
			time.Sleep(100 * time.Millisecond)
		}
		hwm := statusKB(t, conmon.PID, "VmHWM")
		t.Logf("conmon peak RSS %d KiB after copying 5 MB", hwm)
		if hwm > 16<<10 {
			t.Errorf("conmon's peak RSS is %d KiB", hwm)
		}
		e.stop(t, ctr, 0)
		e.remove(t, ctr)
	})
	e.stop(t, id, 0)
	e.remove(t, id)
	assertNoPanic(t, e.d)
	e.guard.assertUntouched(t)
}

// tailOf returns the last KiB of a file.
func tailOf(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > 1024 {
		f.Seek(fi.Size()-1024, 0)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// statusKB reads a field in KiB from /proc/<pid>/status.
func statusKB(t *testing.T, pid int, field string) int {
	t.Helper()
	for _, line := range strings.Split(readFile(t, fmt.Sprintf("/proc/%d/status", pid)), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("%s %q", field, v)
			}
			return n
		}
	}
	t.Fatalf("no %s in the status of %d", field, pid)
	return 0
}

// countingWriter counts and drops what it is given.
type countingWriter int

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}
