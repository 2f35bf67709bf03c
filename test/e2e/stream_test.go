package e2e

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/client-go/tools/remotecommand"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestStreamExecTTY: an interactive shell on a TTY shows a prompt, runs a
// command, sees a resize in `stty size` and returns its exit code.
func TestStreamExecTTY(t *testing.T) {
	e := startStreamEnv(t)
	id := e.container(t, "sleeper", []string{"sleep", "1000"}, nil)
	inR, inW := io.Pipe()
	defer inW.Close()
	var out testutil.SyncBuffer
	sizes := make(testutil.SizeQueue, 4)
	defer close(sizes)
	sizes <- remotecommand.TerminalSize{Width: 120, Height: 40}
	u := e.execURL(t, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"/bin/sh"}, Tty: true, Stdin: true, Stdout: true})
	done := make(chan error, 1)
	go func() {
		done <- testutil.StreamSPDY(ctxT(t, time.Minute), u, remotecommand.StreamOptions{Stdin: inR, Stdout: &out, Tty: true, TerminalSizeQueue: sizes})
	}()
	eventually(t, "a prompt", func() bool { return strings.Contains(out.String(), "# ") })
	io.WriteString(inW, "echo $((6*7))\n")
	eventually(t, "the command's output", func() bool { return strings.Contains(out.String(), "42") })
	io.WriteString(inW, "stty size\n")
	eventually(t, "the first size", func() bool { return strings.Contains(out.String(), "40 120") })
	sizes <- remotecommand.TerminalSize{Width: 90, Height: 25}
	time.Sleep(300 * time.Millisecond)
	io.WriteString(inW, "stty size\n")
	eventually(t, "the new size", func() bool { return strings.Contains(out.String(), "25 90") })
	io.WriteString(inW, "exit 3\n")
	select {
	case err := <-done:
		if got := exitStatus(t, err); got != 3 {
			t.Errorf("exit code %d, want 3", got)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("exec did not end")
	}
}

// TestStreamExecErrors: a missing binary exits 127 with its reason, an
// unknown container or a stopped one is refused, a token works once.
func TestStreamExecErrors(t *testing.T) {
	e := startStreamEnv(t)
	id := e.container(t, "sleeper", []string{"sleep", "1000"}, nil)
	ctx := ctxT(t, time.Minute)

	var errb bytes.Buffer
	u := e.execURL(t, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"no-such-binary"}, Stdout: true, Stderr: true})
	err := testutil.StreamSPDY(ctx, u, remotecommand.StreamOptions{Stdout: io.Discard, Stderr: &errb})
	if got := exitStatus(t, err); got != 127 || !strings.Contains(errb.String(), "not found") {
		t.Errorf("missing binary: exit %d, stderr %q", got, errb.String())
	}
	if err := testutil.StreamSPDY(ctx, u, remotecommand.StreamOptions{Stdout: io.Discard, Stderr: io.Discard}); err == nil {
		t.Error("a used token worked again")
	}
	if err := testutil.StreamSPDY(ctx, strings.Replace(u, "/exec/", "/exec/x", 1), remotecommand.StreamOptions{Stdout: io.Discard}); err == nil {
		t.Error("an unknown token worked")
	}

	_, err = e.d.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "no-such-container", Cmd: []string{"true"}, Stdout: true})
	if status.Code(err) != codes.NotFound {
		t.Errorf("exec in an unknown container: %v", err)
	}

	// A running exec ends when its container stops.
	done := make(chan error, 1)
	u = e.execURL(t, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sleep", "999"}, Stdout: true})
	go func() { done <- testutil.StreamSPDY(ctx, u, remotecommand.StreamOptions{Stdout: io.Discard}) }()
	time.Sleep(500 * time.Millisecond)
	if _, err := e.d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 2}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("exec outlived its container")
	}
	_, err = e.d.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"true"}, Stdout: true})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "not running") {
		t.Errorf("exec in a stopped container: %v", err)
	}
}

// TestStreamExecSharedPID: in a pod sharing one PID namespace, a
// container's exit does not kill its exec'd processes by itself; berthd
// ends those sessions when the container stops.
func TestStreamExecSharedPID(t *testing.T) {
	e := startStreamEnv(t)
	e.podCfg = podConfig("stream-shared")
	e.podCfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	e.pod = runPod(t, e.d, e.podCfg)
	id := e.container(t, "sleeper", []string{"sleep", "1000"}, func(c *runtimeapi.ContainerConfig) {
		c.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD},
		}}
	})
	ctx := ctxT(t, time.Minute)
	var out testutil.SyncBuffer
	u := e.execURL(t, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-c", "echo started; exec sleep 999"}, Stdout: true})
	done := make(chan error, 1)
	go func() { done <- testutil.StreamSPDY(ctx, u, remotecommand.StreamOptions{Stdout: &out}) }()
	eventually(t, "the exec", func() bool { return strings.Contains(out.String(), "started") })
	if _, err := e.d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 2}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if got := exitStatus(t, err); got != 137 {
			t.Errorf("exit code %d, want 137", got)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("exec outlived its container")
	}
}

// TestStreamAttach: attach receives a running container's output and its
// stdin reaches the container; detaching leaves it running.
func TestStreamAttach(t *testing.T) {
	e := startStreamEnv(t)
	id := e.container(t, "echoer", []string{"/bin/sh", "-c", "while true; do echo tick; sleep 0.2; done & while read l; do echo got:$l; done"},
		func(c *runtimeapi.ContainerConfig) { c.Stdin = true })
	ctx := ctxT(t, time.Minute)
	resp, err := e.d.Runtime.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: id, Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	inR, inW := io.Pipe()
	var out testutil.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- testutil.StreamSPDY(ctx, resp.GetUrl(), remotecommand.StreamOptions{Stdin: inR, Stdout: &out, Stderr: io.Discard})
	}()
	eventually(t, "the container's output", func() bool { return strings.Contains(out.String(), "tick") })
	io.WriteString(inW, "ping\n")
	eventually(t, "stdin to reach the container", func() bool { return strings.Contains(out.String(), "got:ping") })
	inW.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("attach: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("attach did not end with its stdin")
	}
	st, err := e.d.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil || st.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("after detach: %v %v", st.GetStatus().GetState(), err)
	}
}

// TestStreamExecNoLeaks: 50 exec sessions in a row, some with a TTY, some
// whose client leaves mid-stream, leave no goroutine, fd or process
// behind in berthd.
func TestStreamExecNoLeaks(t *testing.T) {
	e := startStreamEnv(t)
	id := e.container(t, "sleeper", []string{"sleep", "1000"}, nil)
	one := func(i int) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		switch i % 4 {
		case 0, 1:
			var out bytes.Buffer
			u := e.execURL(t, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"cat"}, Stdin: true, Stdout: true, Stderr: true})
			if err := testutil.StreamSPDY(ctx, u, remotecommand.StreamOptions{Stdin: strings.NewReader("x"), Stdout: &out, Stderr: io.Discard}); err != nil || out.String() != "x" {
				t.Fatalf("exec %d: %v %q", i, err, out.String())
			}
		case 2:
			u := e.execURL(t, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"echo", "hi"}, Tty: true, Stdout: true})
			if err := testutil.StreamSPDY(ctx, u, remotecommand.StreamOptions{Stdout: io.Discard, Tty: true}); err != nil {
				t.Fatalf("exec %d: %v", i, err)
			}
		case 3:
			u := e.execURL(t, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-c", "echo go; sleep 30"}, Stdout: true})
			r, w := io.Pipe()
			finished := make(chan struct{})
			go func() {
				defer close(finished)
				_ = testutil.StreamSPDY(ctx, u, remotecommand.StreamOptions{Stdout: w})
				w.Close()
			}()
			_, _ = io.ReadFull(r, make([]byte, 3))
			cancel()
			go io.Copy(io.Discard, r)
			<-finished
		}
	}
	one(0)
	one(2)
	time.Sleep(time.Second)
	base := e.counts(t)
	for i := range 50 {
		one(i)
	}
	var now berthdCounts
	deadline := time.Now().Add(20 * time.Second)
	for {
		now = e.counts(t)
		if now.goroutines <= base.goroutines+3 && now.fds <= base.fds && now.children <= base.children {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("berthd leaked: before %+v, after %+v; children:\n%s", base, now, e.children(t))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("before %+v, after %+v", base, now)
}
