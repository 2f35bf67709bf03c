package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// Faults of the parts berth drives (issue 21 item 4): each surfaces as a
// clear error or the right status, leaves nothing behind, and berth
// works again, without a restart, once the fault is gone.

// faultyRuncScript runs runc unless the file next to it names the
// subcommand to fail ("create" or "start").
const faultyRuncScript = `#!/bin/sh
fail=$(cat "$(dirname "$0")/fail" 2>/dev/null)
for a in "$@"; do
	case "$a" in
	create|start)
		if [ "$a" = "$fail" ]; then
			echo "injected $a failure" >&2
			exit 1
		fi
		break;;
	esac
done
exec /usr/sbin/runc "$@"
`

// TestFaultRuncFails: a runtime failing at create fails CreateContainer
// with its message and leaves no storage container, conmon, bundle,
// record or cgroup; failing at start fails StartContainer and leaves the
// container exited (not running, removable). With the fault gone the
// same names work.
func TestFaultRuncFails(t *testing.T) {
	dir := t.TempDir()
	wrapper := filepath.Join(dir, "runc")
	if err := os.WriteFile(wrapper, []byte(faultyRuncScript), 0o755); err != nil {
		t.Fatal(err)
	}
	fail := func(step string) {
		if err := os.WriteFile(filepath.Join(dir, "fail"), []byte(step), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e := startRecEnvWith(t, map[string]string{"50-faulty.toml": fmt.Sprintf(
		"[berth.runtime.runtimes.faulty]\nruntime_path = %q\n", wrapper)}, nil)
	pc := podConfig("faulty")
	pc.LogDirectory = filepath.Join(e.d.Dir, "podlogs", "faulty")
	resp, err := e.d.Runtime.RunPodSandbox(ctxT(t, 30*time.Second), &runtimeapi.RunPodSandboxRequest{Config: pc, RuntimeHandler: "faulty"})
	if err != nil {
		t.Fatal(err)
	}
	pod := resp.GetPodSandboxId()
	create := func(name string) (string, error) {
		r, err := e.d.Runtime.CreateContainer(ctxT(t, time.Minute), &runtimeapi.CreateContainerRequest{
			PodSandboxId: pod, Config: e.config(name, "sleep", "1000"), SandboxConfig: pc})
		return r.GetContainerId(), err
	}
	e.checkConsistent(t)
	before := leftovers(t, e.d, e.tn)

	fail("create")
	_, err = create("c1")
	if err == nil || !strings.Contains(err.Error(), "injected create failure") {
		t.Fatalf("CreateContainer with runc failing at create: %v, want runc's message", err)
	}
	assertSameHost(t, before, leftovers(t, e.d, e.tn))

	fail("start")
	id, err := create("c1") // the name was not kept reserved
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.d.Runtime.StartContainer(ctxT(t, time.Minute), &runtimeapi.StartContainerRequest{ContainerId: id})
	if err == nil || !strings.Contains(err.Error(), "injected start failure") {
		t.Fatalf("StartContainer with runc failing at start: %v, want runc's message", err)
	}
	if st := e.status(t, id); st.GetState() == runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("a container whose start failed reports %v", st.GetState())
	}
	e.remove(t, id)
	assertSameHost(t, before, leftovers(t, e.d, e.tn))

	fail("")
	id, err = create("c1")
	if err != nil {
		t.Fatal(err)
	}
	e.start(t, id)
	if st := e.status(t, id); st.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("with the fault gone: %v", st)
	}
	e.stop(t, id, 0)
	e.remove(t, id)
	removePod(t, e.d, pod)
}

// TestFaultStateDirReadOnly: with berth's state directory read-only a
// pod or container cannot be recorded, so it is refused with the cause
// and nothing is made; once writable again the same requests succeed.
func TestFaultStateDirReadOnly(t *testing.T) {
	e := startRecEnv(t)
	e.checkConsistent(t)
	before := leftovers(t, e.d, e.tn)
	state := filepath.Join(e.d.Dir, "state")
	readOnly(t, state)

	pc := podConfig("ro")
	pc.LogDirectory = filepath.Join(e.d.Dir, "podlogs", "ro")
	_, err := e.d.Runtime.RunPodSandbox(ctxT(t, 30*time.Second), &runtimeapi.RunPodSandboxRequest{Config: pc})
	if err == nil || !strings.Contains(err.Error(), "read-only file system") {
		t.Fatalf("RunPodSandbox on a read-only state dir: %v", err)
	}
	_, err = e.create(t, e.config("ro", "sleep", "1000"))
	if err == nil || !strings.Contains(err.Error(), "read-only file system") {
		t.Fatalf("CreateContainer on a read-only state dir: %v", err)
	}
	writable(t, state)
	assertSameHost(t, before, leftovers(t, e.d, e.tn))

	id := runPod(t, e.d, pc)
	c := e.run(t, e.config("ro", "sleep", "1000"))
	e.checkConsistent(t)
	e.stop(t, c, 0)
	e.remove(t, c)
	removePod(t, e.d, id)
	assertSameHost(t, before, leftovers(t, e.d, e.tn))
}

// TestFaultExitsDirUnwritable: a container exits while conmon cannot
// write its exit file; berth still reports the exit with its code, and
// containers exit normally once the directory is writable again.
func TestFaultExitsDirUnwritable(t *testing.T) {
	e := startRecEnv(t)
	exits := filepath.Join(e.d.Dir, "run", "exits")
	id := e.run(t, e.config("quitter", "sh", "-c", "sleep 1; exit 3"))
	readOnly(t, exits)
	st := e.waitExited(t, id, 20*time.Second)
	writable(t, exits)
	if st.GetExitCode() != 3 {
		t.Errorf("exit while the exits dir was read-only: code %d reason %q message %q", st.GetExitCode(), st.GetReason(), st.GetMessage())
	}
	id2 := e.run(t, e.config("quitter2", "sh", "-c", "exit 4"))
	if st := e.waitExited(t, id2, 20*time.Second); st.GetExitCode() != 4 {
		t.Errorf("after the fault: %v", st)
	}
	e.remove(t, id)
	e.remove(t, id2)
	e.checkConsistent(t)
}

// TestFaultStorageFullRecovers: with the storage filesystem full a pull
// fails with ResourceExhausted and leaves no layer; once space is freed
// the same pull succeeds and containers run, without a restart.
func TestFaultStorageFullRecovers(t *testing.T) {
	var root string
	e := startRecEnvWith(t, nil, func(d *testutil.Daemon) {
		root = filepath.Join(d.Dir, "storage")
		if err := os.MkdirAll(root, 0o700); err != nil {
			t.Fatal(err)
		}
		// testutil's cleanup stops berthd before unmounting everything
		// under its directory.
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "berth-test-full", root).CombinedOutput(); err != nil {
			t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
		}
	})
	e.reg.Push(t, "ctr/other:1", testutil.BusyboxImage(t, testutil.ImageSpec{
		ExtraLayers: []map[string]string{{"big": strings.Repeat("x", 4<<20)}}}))
	ref := e.reg.Ref("ctr/other:1")
	// Fill what is left of the storage filesystem.
	filler := filepath.Join(root, "berth-test-filler")
	var fs unix.Statfs_t
	if err := unix.Statfs(root, &fs); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("fallocate", "-l", fmt.Sprint(fs.Bavail*uint64(fs.Bsize)), filler).CombinedOutput(); err != nil {
		t.Fatalf("fill the storage tmpfs: %v: %s", err, out)
	}
	_, err := pullImage(t, e.d, ref, nil)
	expectCode(t, err, codes.ResourceExhausted, "no space left")
	stillServing(t, e.d)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := pullImage(t, e.d, ref, nil); err != nil {
		t.Fatalf("pull after space was freed: %v", err)
	}
	c := e.run(t, e.config("after", "sleep", "1000"))
	e.stop(t, c, 0)
	e.remove(t, c)
}

// TestFaultCNIHangs: a CNI plugin that never answers ADD (and whose
// child holds its output open) fails the pod at cni_timeout: the plugin
// is killed, berth undoes the half-made pod (DEL, pins), and with a
// working config the same pod starts.
func TestFaultCNIHangs(t *testing.T) {
	plugins, dropIns := pluginDir(t)
	dropIns["60-timeout.toml"] = "[berth.network]\ncni_timeout = \"5s\"\n"
	hanger := "#!/bin/sh\ncase \"$CNI_COMMAND\" in\nVERSION) echo '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.4.0\",\"1.0.0\"]}';;\nADD) sleep 637;;\nesac\nexit 0\n"
	if err := os.WriteFile(filepath.Join(plugins, "hanger"), []byte(hanger), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Command("pkill", "-f", "sleep 637").Run() })
	d, tn := startNetDaemon(t, dropIns)
	before := snapshotHost(t, d, tn)
	writeConf(t, d, "10-test.conflist", tn.conflist("bridge", `{"type": "hanger"}`))
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig("hang")})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("RunPodSandbox with a hanging plugin: %v, want DeadlineExceeded", err)
	}
	// berth goes on past the caller's deadline (a retry gets the pod
	// made meanwhile), up to cni_timeout.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := d.Runtime.ListPodSandbox(ctxT(t, 5*time.Second), &runtimeapi.ListPodSandboxRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetItems()) == 0 && !hangerRunning(t) && strings.Contains(d.Log(), "hanger") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("25s after cni_timeout: %d pods, hanging plugin still running: %v", len(resp.GetItems()), hangerRunning(t))
		}
		time.Sleep(200 * time.Millisecond)
	}
	assertSameHost(t, before, snapshotHost(t, d, tn))

	writeConf(t, d, "10-test.conflist", tn.conflist("bridge"))
	time.Sleep(100 * time.Millisecond)
	id := runPod(t, d, podConfig("hang"))
	removePod(t, d, id)
	assertSameHost(t, before, snapshotHost(t, d, tn))
}

// hangerRunning reports whether a "hanger" CNI plugin process exists.
func hangerRunning(t *testing.T) bool {
	t.Helper()
	out, _ := exec.Command("pgrep", "-f", "/hanger").Output()
	return strings.TrimSpace(string(out)) != ""
}

// readOnly bind-mounts dir read-only over itself until writable or the
// end of the test.
func readOnly(t *testing.T, dir string) {
	t.Helper()
	for _, args := range [][]string{{"--bind", dir, dir}, {"-o", "remount,bind,ro", dir}} {
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			t.Fatalf("mount %v: %v: %s", args, err, out)
		}
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
}

func writable(t *testing.T, dir string) {
	t.Helper()
	if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
		t.Fatalf("umount %s: %v: %s", dir, err, out)
	}
}
