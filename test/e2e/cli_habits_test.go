package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// cliAttemptYAML is a container config for one attempt of a container,
// logging where the kubelet would: <name>/<attempt>.log.
func cliAttemptYAML(name, image string, attempt int, script string) string {
	return fmt.Sprintf(`metadata: {name: %s, attempt: %d}
image: {image: %q}
command: [/bin/sh, -c]
args: [%q]
log_path: %s/%d.log
`, name, attempt, image, script, name, attempt)
}

// TestCLILogsHabits (issue 13, item 7): logs -t, -p/--previous,
// -r/--reopen and --reverse, held against crictl's output where crictl
// has the flag.
func TestCLILogsHabits(t *testing.T) {
	d, _, ref := cliDaemon(t)
	cliSkipUnimplemented(t, d, "ps")
	testutil.BuildCrictl(t)
	cli(t, d, "pull", ref)
	dir := t.TempDir()
	podFile := cliWrite(t, dir, "pod.yaml", cliPodYAML("logs", "habits", filepath.Join(dir, "logs")))
	podID := strings.TrimSpace(cli(t, d, "runp", podFile))
	attempt := func(n int, script string) string {
		f := cliWrite(t, dir, fmt.Sprintf("app-%d.yaml", n), cliAttemptYAML("app", ref, n, script))
		id := strings.TrimSpace(cli(t, d, "create", podID, f, podFile))
		cli(t, d, "start", id)
		return id
	}
	first := attempt(0, "for i in 1 2 3; do echo first-$i; done")
	waitState(t, d, first, runtimeapi.ContainerState_CONTAINER_EXITED)
	second := attempt(1, "for i in 1 2 3 4 5; do echo second-$i; done")
	waitState(t, d, second, runtimeapi.ContainerState_CONTAINER_EXITED)

	same := func(want string, args ...string) {
		t.Helper()
		b, c := cli(t, d, args...), crictlRun(t, d, args...)
		if b != c || (want != "" && b != want) {
			t.Errorf("%s:\nberth  %q\ncrictl %q\nwant   %q", strings.Join(args, " "), b, c, want)
		}
	}
	same("second-1\nsecond-2\nsecond-3\nsecond-4\nsecond-5\n", "logs", second)
	same("first-1\nfirst-2\nfirst-3\n", "logs", "-p", second)
	same("", "logs", "-t", "--tail", "2", second)
	if out := cli(t, d, "logs", "-t", "--tail", "1", second); !strings.HasSuffix(out, " second-5\n") || len(out) < 30 {
		t.Errorf("logs -t: %q", out)
	}
	if out := cli(t, d, "logs", "--reverse", "--tail", "3", second); out != "second-5\nsecond-4\nsecond-3\n" {
		t.Errorf("logs --reverse --tail 3: %q", out)
	}
	if out := cli(t, d, "logs", "--reverse", "-p", second); out != "first-3\nfirst-2\nfirst-1\n" {
		t.Errorf("logs --reverse -p: %q", out)
	}
	cliFail(t, d, "no previous attempt", "logs", "-p", first)
	// Once the first attempt is removed its log is found where the kubelet
	// keeps it, as crictl looks for it.
	cli(t, d, "rm", first)
	same("first-1\nfirst-2\nfirst-3\n", "logs", "--previous", second)

	// -r is --reopen after the command, the endpoint before it (crictl's
	// way): the runtime reopens the log, which conmon does as a new file.
	running := attempt(2, "echo running; sleep 1000")
	waitState(t, d, running, runtimeapi.ContainerState_CONTAINER_RUNNING)
	logPath := cliState(t, d, running).LogPath
	eventually(t, "the running attempt's first line", func() bool {
		return cli(t, d, "logs", running) == "running\n"
	})
	before, err := os.Stat(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, "berth"), "-r", "unix://"+d.Socket, "logs", "-r", running[:10])
	cmd.Env = cliEnv(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("berth -r ENDPOINT logs -r CTR: %v: %q", err, out)
	}
	if after, err := os.Stat(logPath); err != nil || os.SameFile(before, after) {
		t.Errorf("logs -r did not reopen the log (%v)", err)
	}
	crictlRun(t, d, "logs", "-r", running)
	cli(t, d, "logs", "--runtime-endpoint", "unix://"+d.Socket, running[:10])
	cli(t, d, "rmp", "-f", "-a")
}

// TestCLIAttachDetach (issue 13, item 8): an operator attached to a shell
// with -it leaves with Ctrl-P Ctrl-Q (or the --detach-keys given); berth
// exits 0 and the container keeps running, its shell still answering.
func TestCLIAttachDetach(t *testing.T) {
	d, _, ref := cliDaemon(t)
	cliSkipUnimplemented(t, d, "ps")
	cli(t, d, "pull", ref)
	dir := t.TempDir()
	podFile := cliWrite(t, dir, "pod.yaml", cliPodYAML("attach", "habits", filepath.Join(dir, "logs")))
	ctrFile := cliWrite(t, dir, "shell.yaml", fmt.Sprintf(`metadata: {name: shell}
image: {image: %q}
command: [/bin/sh]
stdin: true
tty: true
log_path: shell.log
`, ref))
	id := cliIDs(t, cli(t, d, "run", ctrFile, podFile))[0]
	waitState(t, d, id, runtimeapi.ContainerState_CONTAINER_RUNNING)

	session := func(keys []byte, marker string, args ...string) {
		t.Helper()
		cmd := cliCmd(t, d, append([]string{"attach", "-it"}, append(args, id[:10])...)...)
		tty, err := pty.Start(cmd)
		if err != nil {
			t.Fatalf("attach in a terminal: %v", err)
		}
		defer tty.Close()
		var screen testutil.SyncBuffer
		go io.Copy(&screen, tty)
		// The shell answers what is typed (its echo of the line is not enough).
		fmt.Fprintf(tty, "echo %s-$((40+2))\r", marker)
		eventually(t, "the shell's answer through attach", func() bool {
			return strings.Contains(screen.String(), marker+"-42")
		})
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if _, err := tty.Write(keys); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("attach after the detach keys: %v; screen %q", err, screen.String())
			}
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("attach did not end on the detach keys %q; screen %q", keys, screen.String())
		}
		if st := cliState(t, d, id); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Fatalf("container after detaching: %v", st.State)
		}
	}
	session([]byte{0x10, 0x11}, "first")                              // Ctrl-P Ctrl-Q
	session([]byte{0x18, 'x'}, "second", "--detach-keys", "ctrl-x,x") // custom keys
	session([]byte{0x10, 0x11}, "third")                              // the shell is still there
	cliFail(t, d, "--detach-keys", "attach", "-it", "--detach-keys", "ctrl-nope", id)
	cli(t, d, "rmp", "-f", "-a")
}

// TestCLIPortForwardKeepsServing (issue 13, item 9): a connection to a
// port nothing listens on in the pod is reported on that connection, and
// the forward goes on serving other connections, before and after.
func TestCLIPortForwardKeepsServing(t *testing.T) {
	d, _, _ := cliDaemon(t)
	dir := t.TempDir()
	id := strings.TrimSpace(cli(t, d, "runp", cliWrite(t, dir, "pod.yaml", cliPodYAML("pf", "habits", filepath.Join(dir, "logs")))))
	_, info := podStatus(t, d, id)
	srv := exec.Command("nsenter", "--net="+info.NetNS, "/bin/busybox", "nc", "-ll", "-p", "8080", "-e", "/bin/echo", "hello-pf")
	if err := srv.Start(); err != nil {
		t.Skipf("no listener in the pod: %v", err)
	}
	defer srv.Process.Kill()
	good, refused := freePort(t), freePort(t)
	pf := cliCmd(t, d, "port-forward", id[:12], fmt.Sprintf("%d:8080", good), fmt.Sprintf("%d:9", refused))
	var out testutil.SyncBuffer
	pf.Stdout, pf.Stderr = &out, &out
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- pf.Wait() }()
	defer func() {
		pf.Process.Signal(os.Interrupt)
		<-exited
	}()
	goodAddr, refusedAddr := fmt.Sprintf("127.0.0.1:%d", good), fmt.Sprintf("127.0.0.1:%d", refused)
	eventually(t, "the forward to answer", func() bool {
		got, err := cliDial(goodAddr)
		return err == nil && strings.Contains(got, "hello-pf")
	})
	for i := range 3 {
		// The refused port: the local connection is closed with nothing read.
		if got, err := cliDial(refusedAddr); err != nil || got != "" {
			t.Errorf("connection %d to the refused port: %q, %v", i, got, err)
		}
		select {
		case err := <-exited:
			t.Fatalf("port-forward exited after a refused connection: %v\n%s", err, out.String())
		default:
		}
		if got, err := cliDial(goodAddr); err != nil || !strings.Contains(got, "hello-pf") {
			t.Errorf("good port after %d refused connections: %q, %v\n%s", i+1, got, err, out.String())
		}
	}
	eventually(t, "the refusals to be reported", func() bool {
		return strings.Count(out.String(), fmt.Sprintf("for %d -> 9 failed: ", refused)) == 3
	})
	if log := out.String(); !strings.Contains(log, "refused") || strings.Contains(log, "E1") || strings.Contains(log, "lost connection") {
		t.Errorf("port-forward output:\n%s", log)
	}

	// Concurrent connections stay apart: a slow one is not cut by a failure.
	slow, err := net.Dial("tcp", goodAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if got, err := cliDial(refusedAddr); err != nil || got != "" {
		t.Errorf("refused while another connection is open: %q, %v", got, err)
	}
	slow.SetDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(slow); (err != nil && !errors.Is(err, io.EOF)) || !bytes.Contains(b, []byte("hello-pf")) {
		t.Errorf("connection open across another's failure read %q, %v", b, err)
	}
	t.Logf("port-forward said:\n%s", out.String())
	if lines := strings.Split(out.String(), "\n"); !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "Forwarding from 127.0.0.1:") }) {
		t.Errorf("no Forwarding line:\n%s", out.String())
	}
}
