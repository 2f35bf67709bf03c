package stream

import (
	"context"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/runtime"

	"k8s.io/client-go/tools/remotecommand"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/testutil"
)

func attachURL(t *testing.T, s *Server, req *runtimeapi.AttachRequest) string {
	t.Helper()
	resp, err := s.GetAttach(req)
	if err != nil {
		t.Fatalf("GetAttach: %v", err)
	}
	return resp.Url
}

func running(t *testing.T, tg runtime.ExecTarget) bool {
	out, _ := exec.Command(runcPath, "--root", tg.Runtime.Root, "state", tg.ID).Output()
	return strings.Contains(string(out), `"running"`)
}

// Attach streams stdout and stderr apart, forwards stdin, and detaching
// (stdin ends) leaves the container running for the next attach.
func TestAttachStdio(t *testing.T) {
	needTools(t)
	s, ctrs := newTestServer(t, nil)
	tg := runConmon(t, []string{"sh", "-c", "while read l; do echo got:$l; echo err:$l >&2; done"}, conmonOpts{stdin: true})
	ctrs.set("c1", tg)
	for _, word := range []string{"first", "second"} {
		inR, inW := io.Pipe()
		var out, errb testutil.SyncBuffer
		u := attachURL(t, s, &runtimeapi.AttachRequest{ContainerId: "c1", Stdin: true, Stdout: true, Stderr: true})
		done := make(chan error, 1)
		go func() {
			done <- testutil.StreamSPDY(t.Context(), u, remotecommand.StreamOptions{Stdin: inR, Stdout: &out, Stderr: &errb})
		}()
		// Until the attach is connected, input would go nowhere.
		waitFor(t, 10*time.Second, "the attach session", func() bool { return s.Sessions() == 1 })
		time.Sleep(100 * time.Millisecond)
		io.WriteString(inW, word+"\n")
		waitFor(t, 10*time.Second, "the echo", func() bool {
			return strings.Contains(out.String(), "got:"+word) && strings.Contains(errb.String(), "err:"+word)
		})
		if strings.Contains(out.String(), "err:") || strings.Contains(errb.String(), "got:") {
			t.Errorf("streams mixed: stdout %q stderr %q", out.String(), errb.String())
		}
		inW.Close() // detach
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("attach: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("attach did not end when stdin closed")
		}
		if !running(t, tg) {
			t.Fatal("detaching stopped the container")
		}
	}
}

// A client that only watches gets the output of a running container and
// leaving does not stop it.
func TestAttachOutputAndDetach(t *testing.T) {
	needTools(t)
	s, ctrs := newTestServer(t, nil)
	tg := runConmon(t, []string{"sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"}, conmonOpts{})
	ctrs.set("c1", tg)
	var out testutil.SyncBuffer
	ctx, cancel := context.WithCancel(t.Context())
	u := attachURL(t, s, &runtimeapi.AttachRequest{ContainerId: "c1", Stdout: true})
	done := make(chan error, 1)
	go func() { done <- testutil.StreamSPDY(ctx, u, remotecommand.StreamOptions{Stdout: &out}) }()
	waitFor(t, 10*time.Second, "output", func() bool { return strings.Count(out.String(), "tick") >= 3 })
	cancel()
	<-done
	waitFor(t, 10*time.Second, "the session to end", func() bool { return s.Sessions() == 0 })
	if !running(t, tg) {
		t.Fatal("detaching stopped the container")
	}
}

// With a TTY, a resize goes through conmon's ctl FIFO to the container's
// terminal.
func TestAttachTTYResize(t *testing.T) {
	needTools(t)
	s, ctrs := newTestServer(t, nil)
	tg := runConmon(t, []string{"sh"}, conmonOpts{tty: true, stdin: true})
	ctrs.set("c1", tg)
	inR, inW := io.Pipe()
	defer inW.Close()
	var out testutil.SyncBuffer
	sizes := make(testutil.SizeQueue, 4)
	defer close(sizes)
	sizes <- remotecommand.TerminalSize{Width: 100, Height: 30}
	u := attachURL(t, s, &runtimeapi.AttachRequest{ContainerId: "c1", Stdin: true, Stdout: true, Tty: true})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		_ = testutil.StreamSPDY(ctx, u, remotecommand.StreamOptions{Stdin: inR, Stdout: &out, Tty: true, TerminalSizeQueue: sizes})
	}()
	waitFor(t, 10*time.Second, "the attach session", func() bool { return s.Sessions() == 1 })
	time.Sleep(200 * time.Millisecond)
	io.WriteString(inW, "stty size\n")
	waitFor(t, 10*time.Second, "size 30 100", func() bool { return strings.Contains(out.String(), "30 100") })
	sizes <- remotecommand.TerminalSize{Width: 90, Height: 20}
	time.Sleep(200 * time.Millisecond)
	io.WriteString(inW, "stty size\n")
	waitFor(t, 10*time.Second, "size 20 90", func() bool { return strings.Contains(out.String(), "20 90") })
}

// stdin_once: the end of the client's stdin closes the container's, and
// the attach lasts until the container is done.
func TestAttachStdinOnce(t *testing.T) {
	needTools(t)
	s, ctrs := newTestServer(t, nil)
	tg := runConmon(t, []string{"sh", "-c", "cat; echo cat-done"}, conmonOpts{stdin: true, stdinOnce: true})
	ctrs.set("c1", tg)
	inR, inW := io.Pipe()
	var out testutil.SyncBuffer
	u := attachURL(t, s, &runtimeapi.AttachRequest{ContainerId: "c1", Stdin: true, Stdout: true})
	done := make(chan error, 1)
	go func() {
		done <- testutil.StreamSPDY(t.Context(), u, remotecommand.StreamOptions{Stdin: inR, Stdout: &out})
	}()
	waitFor(t, 10*time.Second, "the attach session", func() bool { return s.Sessions() == 1 })
	time.Sleep(100 * time.Millisecond)
	io.WriteString(inW, "abc\n")
	waitFor(t, 10*time.Second, "the echo", func() bool { return strings.Contains(out.String(), "abc") })
	inW.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("attach: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("attach did not end with the container")
	}
	if !strings.Contains(out.String(), "cat-done") {
		t.Errorf("output %q: cat did not see the end of its stdin", out.String())
	}
}

func TestAttachRefused(t *testing.T) {
	needTools(t)
	s, ctrs := newTestServer(t, nil)
	ctrs.set("stopped", runtime.ExecTarget{ID: "stopped"})
	if _, err := s.GetAttach(&runtimeapi.AttachRequest{ContainerId: "stopped", Stdout: true}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("attach to a stopped container: %v", err)
	}
	if _, err := s.GetAttach(&runtimeapi.AttachRequest{ContainerId: "nosuch", Stdout: true}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("attach to an unknown container: %v", err)
	}
}
