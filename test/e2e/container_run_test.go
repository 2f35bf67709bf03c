package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/container"
	"github.com/berth-cri/berth/internal/testutil"
)

func TestContainerExitCodes(t *testing.T) {
	e := startCtrEnv(t)
	for _, tc := range []struct {
		name   string
		script string
		code   int32
		reason string
		limit  int64
	}{
		{"zero", "exit 0", 0, "Completed", 0},
		{"one", "exit 1", 1, "Error", 0},
		// PID 1 of a namespace ignores signals it does not handle, even
		// its own SIGKILL: the kill comes from StopContainer.
		{"killed", "", 137, "Error", 0},
		// awk (as PID 1) doubles a string until the cgroup's OOM killer
		// ends it.
		{"oom", `exec awk 'BEGIN { s = "x"; while (1) s = s s }'`, 137, "OOMKilled", 32 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.config("exit-"+tc.name, "sh", "-c", tc.script)
			if tc.limit > 0 {
				cfg.Linux = &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: tc.limit}}
			}
			if tc.script == "" {
				cfg.Command = []string{"sleep", "1000"}
			}
			id := e.run(t, cfg)
			if tc.script == "" {
				e.stop(t, id, 0)
			}
			st := e.waitExited(t, id, 30*time.Second)
			if st.GetExitCode() != tc.code || st.GetReason() != tc.reason {
				t.Fatalf("exit code %d reason %q, want %d %q", st.GetExitCode(), st.GetReason(), tc.code, tc.reason)
			}
			e.remove(t, id)
		})
	}
}

func TestContainerStop(t *testing.T) {
	e := startCtrEnv(t)
	// A process that ignores SIGTERM is killed when the timeout ends.
	stubborn := e.run(t, e.config("stubborn", "sh", "-c", "trap '' TERM; echo ready; while true; do sleep 0.1; done"))
	time.Sleep(200 * time.Millisecond) // let the trap be set
	start := time.Now()
	e.stop(t, stubborn, 2)
	took := time.Since(start)
	st := e.status(t, stubborn)
	if st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 137 {
		t.Fatalf("after stop: %v", st)
	}
	if took < 2*time.Second || took > 3*time.Second {
		t.Fatalf("stop took %v, want the 2s timeout plus a small margin", took)
	}
	// A process that handles SIGTERM exits at once with its own code.
	polite := e.run(t, e.config("polite", "sh", "-c", "trap 'exit 42' TERM; while true; do sleep 0.1; done"))
	time.Sleep(200 * time.Millisecond)
	start = time.Now()
	e.stop(t, polite, 30)
	if took := time.Since(start); took > time.Second {
		t.Fatalf("polite stop took %v", took)
	}
	if st := e.status(t, polite); st.GetExitCode() != 42 {
		t.Fatalf("polite exit code %d", st.GetExitCode())
	}
	// Two concurrent stops: the second waits for the first, and its
	// shorter timeout brings the SIGKILL forward.
	both := e.run(t, e.config("both", "sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"))
	time.Sleep(200 * time.Millisecond)
	start = time.Now()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); e.stop(t, both, 60) }()
	go func() { defer wg.Done(); time.Sleep(100 * time.Millisecond); e.stop(t, both, 1) }()
	wg.Wait()
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("concurrent stops took %v", took)
	}
	// Removing a running container stops it first.
	running := e.run(t, e.config("running", "sleep", "1000"))
	e.remove(t, running)
	for _, id := range []string{stubborn, polite, both} {
		e.remove(t, id)
	}
	assertNoContainersLeft(t, e)
}

func TestContainerStopSignalFromImage(t *testing.T) {
	e := startCtrEnv(t)
	img := testutil.BusyboxImage(t, testutil.ImageSpec{})
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	c.StopSignal = "SIGUSR1"
	c.Volumes = map[string]struct{}{"/data/vol": {}}
	img, err = mutate.Config(img, c)
	if err != nil {
		t.Fatal(err)
	}
	e.reg.Push(t, "ctr/usr1:1", img)
	ref := e.reg.Ref("ctr/usr1:1")
	if _, err := e.d.Images.PullImage(ctxT(t, time.Minute), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		t.Fatal(err)
	}
	cfg := e.config("usr1", "sh", "-c", "trap 'exit 7' USR1; trap '' TERM; test -d /data/vol || exit 9; while true; do sleep 0.1; done")
	cfg.Image.Image = ref
	id := e.run(t, cfg)
	time.Sleep(200 * time.Millisecond)
	e.stop(t, id, 30)
	st := e.status(t, id)
	if st.GetExitCode() != 7 || st.GetStopSignal() != runtimeapi.Signal_SIGNAL_SIGUSR1 {
		t.Fatalf("exit %d, stop signal %v", st.GetExitCode(), st.GetStopSignal())
	}
}

func TestContainerExecSync(t *testing.T) {
	e := startCtrEnv(t)
	id := e.run(t, e.config("exec", "sleep", "1000"))
	r := e.exec(t, id, 0, "sh", "-c", "echo out; echo err >&2; exit 5")
	if string(r.GetStdout()) != "out\n" || string(r.GetStderr()) != "err\n" || r.GetExitCode() != 5 {
		t.Fatalf("exec: %q %q %d", r.GetStdout(), r.GetStderr(), r.GetExitCode())
	}
	start := time.Now()
	r = e.exec(t, id, 1, "sleep", "30")
	if took := time.Since(start); r.GetExitCode() == 0 || took > 2*time.Second {
		t.Fatalf("timed-out exec: exit %d after %v", r.GetExitCode(), took)
	}
	// Still usable afterwards, and nothing of the timed-out command left.
	r = e.exec(t, id, 5, "sh", "-c", "ps -o args | grep -c '^sleep 30' || true")
	if strings.TrimSpace(string(r.GetStdout())) != "0" {
		t.Fatalf("timed-out command still runs: %q", r.GetStdout())
	}
	// Big output is capped so that the reply fits 16 MiB, not an error.
	r = e.exec(t, id, 30, "sh", "-c", "head -c 20000000 /dev/zero")
	if len(r.GetStdout()) != container.MaxExecOutput || r.GetExitCode() != 0 {
		t.Fatalf("capped exec: %d bytes, exit %d", len(r.GetStdout()), r.GetExitCode())
	}
	_, err := e.d.Runtime.ExecSync(ctxT(t, 10*time.Second), &runtimeapi.ExecSyncRequest{ContainerId: id})
	expectCode(t, err, codes.InvalidArgument)
	e.stop(t, id, 0)
	_, err = e.d.Runtime.ExecSync(ctxT(t, 10*time.Second), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"true"}})
	expectCode(t, err, codes.FailedPrecondition)
}

func TestContainerUserEnvWorkdir(t *testing.T) {
	e := startCtrEnv(t)
	script := `echo "uid=$(id -u) gid=$(id -g) groups=$(id -G) pwd=$(pwd) home=$HOME from=$FROM_IMAGE over=$OVERRIDE host=$HOSTNAME"`
	cfg := e.config("user", "sh", "-c", script)
	cfg.Image.Image = e.appRef
	cfg.Envs = []*runtimeapi.KeyValue{{Key: "OVERRIDE", Value: []byte("request")}}
	id := e.run(t, cfg)
	st := e.waitExited(t, id, 10*time.Second)
	out := strings.Join(logLines(t, st.GetLogPath()), "\n")
	want := "stdout F uid=1000 gid=1000 groups=1000 pwd=/srv home=/home/app from=yes over=request host=ctr"
	if out != want {
		t.Fatalf("got %q, want %q", out, want)
	}
	if u := st.GetUser().GetLinux(); u.GetUid() != 1000 || u.GetGid() != 1000 {
		t.Fatalf("status user %v", u)
	}
	// RunAsUser, RunAsGroup and supplemental groups override the image;
	// a missing working dir is created.
	cfg = e.config("user2", "sh", "-c", script+`; stat -c "owner=%u:%g" .`)
	cfg.Image.Image = e.appRef
	cfg.WorkingDir = "/new/dir"
	cfg.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
		RunAsUser: &runtimeapi.Int64Value{Value: 4242}, RunAsGroup: &runtimeapi.Int64Value{Value: 4343},
		SupplementalGroups: []int64{5000},
	}}
	id = e.run(t, cfg)
	st = e.waitExited(t, id, 10*time.Second)
	out = strings.Join(logLines(t, st.GetLogPath()), "\n")
	if !strings.HasPrefix(out, "stdout F uid=4242 gid=4343 groups=4343 5000 pwd=/new/dir home=/ ") ||
		!strings.HasSuffix(out, "stdout F owner=4242:4343") {
		t.Fatalf("got %q", out)
	}
	// A read-only rootfs refuses writes, but /tmp-less writes to mounts work.
	cfg = e.config("ro", "sh", "-c", "touch /x 2>/dev/null && echo wrote || echo refused")
	cfg.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{ReadonlyRootfs: true}}
	id = e.run(t, cfg)
	st = e.waitExited(t, id, 10*time.Second)
	if out := strings.Join(logLines(t, st.GetLogPath()), "\n"); out != "stdout F refused" {
		t.Fatalf("read-only rootfs: %q", out)
	}
}

func TestContainerReopenLog(t *testing.T) {
	e := startCtrEnv(t)
	id := e.run(t, e.config("rotate", "sh", "-c", "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.05; done"))
	logPath := e.status(t, id).GetLogPath()
	time.Sleep(300 * time.Millisecond)
	rotated := logPath + ".1"
	if err := os.Rename(logPath, rotated); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.Runtime.ReopenContainerLog(ctxT(t, 10*time.Second), &runtimeapi.ReopenContainerLogRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	before, after := logLines(t, rotated), logLines(t, logPath)
	if len(before) == 0 || len(after) == 0 {
		t.Fatalf("rotated %d lines, new file %d lines", len(before), len(after))
	}
	e.stop(t, id, 0)
	_, err := e.d.Runtime.ReopenContainerLog(ctxT(t, 10*time.Second), &runtimeapi.ReopenContainerLogRequest{ContainerId: id})
	expectCode(t, err, codes.FailedPrecondition)
}

func TestContainerUpdateResources(t *testing.T) {
	e := startCtrEnv(t)
	id := e.run(t, e.config("upd", "sleep", "1000"))
	res := &runtimeapi.LinuxContainerResources{CpuShares: 512, MemoryLimitInBytes: 64 << 20,
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}}}
	if _, err := e.d.Runtime.UpdateContainerResources(ctxT(t, 10*time.Second), &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: res}); err != nil {
		t.Fatal(err)
	}
	st := e.status(t, id)
	if st.GetResources().GetLinux().GetMemoryLimitInBytes() != 64<<20 {
		t.Fatalf("resources %v", st.GetResources())
	}
	r := e.exec(t, id, 5, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
	if v := strings.TrimSpace(string(r.GetStdout())); v != "67108864" && r.GetExitCode() == 0 {
		t.Fatalf("memory limit in the cgroup: %q", v)
	}
}

func TestContainerMountsAndVolumes(t *testing.T) {
	e := startCtrEnv(t)
	src := filepath.Join(e.d.Dir, "hostdir")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("from-host"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := e.config("mounts", "sh", "-c", "cat /in/f; (echo x > /in/g) 2>/dev/null && echo rw || echo ro; cat /etc/hostname")
	cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/in", HostPath: src, Readonly: true}}
	id := e.run(t, cfg)
	st := e.waitExited(t, id, 10*time.Second)
	out := strings.Join(logLines(t, st.GetLogPath()), "|")
	if out != "stdout P from-host|stdout F ro|stdout F ctr" {
		t.Fatalf("got %q", out)
	}
	if len(st.GetMounts()) != 1 || st.GetMounts()[0].GetHostPath() != src {
		t.Fatalf("status mounts %v", st.GetMounts())
	}
}

// conmon reads at most 8 KiB at a time: a longer line becomes partial (P)
// records closed by a full (F) one, and joining them gives the line back.
func TestContainerLogLongLine(t *testing.T) {
	e := startCtrEnv(t)
	id := e.run(t, e.config("long", "sh", "-c", "head -c 20000 /dev/zero | tr '\\0' x; echo; echo short"))
	st := e.waitExited(t, id, 10*time.Second)
	var partial int
	var line strings.Builder
	var full []string
	for _, l := range logLines(t, st.GetLogPath()) {
		stream, rest, _ := strings.Cut(l, " ")
		tag, msg, _ := strings.Cut(rest, " ")
		if stream != "stdout" {
			t.Fatalf("unexpected %q", l)
		}
		line.WriteString(msg)
		if tag == "P" {
			partial++
			continue
		}
		full = append(full, line.String())
		line.Reset()
	}
	if partial == 0 || len(full) != 2 || full[0] != strings.Repeat("x", 20000) || full[1] != "short" {
		t.Fatalf("%d partial records, lines of length %d", partial, len(full))
	}
}
