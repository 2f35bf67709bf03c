package e2e

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// TestDaemonReloadLogsEachChange edits the config of a berthd running at
// log level warn and sends SIGHUP: the log says, key by key, what was
// applied (the level change visibly, though it lowers the level), what
// needs a restart, what was refused and what a command-line flag hides.
func TestDaemonReloadLogsEachChange(t *testing.T) {
	d := testutil.StartDaemon(t, testutil.DaemonOptions{BinDir: binDir, Args: []string{"--stream-port", "0"},
		DropIns: map[string]string{"50-ops.toml": "[berth.runtime]\nlog_level = \"warn\"\n"}})
	d.WriteDropIn(t, "50-ops.toml", `[berth.runtime]
log_level = "info"
conmon_cgroup = "system.slice"
pids_limit = 100
default_runtime = "other"

[berth.runtime.runtimes.other]
runtime_path = "/usr/bin/other"

[berth.api]
stream_port = "12345"
`)
	reloadAndWait(t, d)
	log := d.Log()
	for _, want := range []string{
		`level=WARN msg="reload: applied" key=berth.runtime.log_level old=warn new=info`,
		`level=WARN msg="reload: needs a restart to take effect" key=berth.runtime.conmon_cgroup old=pod new=system.slice`,
		`level=WARN msg="reload: needs a restart to take effect" key=berth.runtime.pids_limit old=0 new=100`,
		`level=WARN msg="reload: needs a restart to take effect" key=berth.runtime.runtimes.other.runtime_path old=(unset) new=/usr/bin/other`,
		`level=WARN msg="reload: refused" key=berth.runtime.default_runtime old=runc new=other reason="\"other\" is not a configured runtime handler"`,
		`level=WARN msg="reload: changed in the config files, but a command-line flag sets it" key=berth.api.stream_port old=0 new=12345 reason="set by flag --stream-port"`,
		`level=INFO msg="reload: done" applied=[berth.runtime.log_level] needs_restart="[berth.runtime.conmon_cgroup berth.runtime.pids_limit ` +
			`berth.runtime.runtimes.other.allowed_annotations berth.runtime.runtimes.other.runtime_path berth.runtime.runtimes.other.runtime_root ` +
			`berth.runtime.runtimes.other.runtime_type]" refused=[berth.runtime.default_runtime] set_by_flag=[berth.api.stream_port]`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s", want)
		}
	}
	if strings.Contains(log, `"reload: applied" key=berth.runtime.default_runtime`) {
		t.Errorf("the refused default_runtime was logged as applied")
	}

	// Raising the level: the change still shows, at the new level.
	d.WriteDropIn(t, "50-ops.toml", "[berth.runtime]\nlog_level = \"warn\"\n")
	d.Signal(t, syscall.SIGHUP)
	waitLog(t, d, `level=WARN msg="reload: applied" key=berth.runtime.log_level old=info new=warn`)
}

// TestDaemonNotifiesSystemdOnceServing runs berthd as a Type=notify unit
// would: READY=1 arrives on $NOTIFY_SOCKET once the CRI socket answers,
// and STOPPING=1 when it stops.
func TestDaemonNotifiesSystemdOnceServing(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "sd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "notify.sock")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := testutil.NewDaemon(t, testutil.DaemonOptions{BinDir: binDir, Env: []string{"NOTIFY_SOCKET=" + sock}})

	type message struct {
		text string
		// versionErr is Version's answer on the CRI socket the moment the
		// message arrived.
		versionErr error
	}
	messages := make(chan message, 4)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ln.Read(buf)
			if err != nil {
				close(messages)
				return
			}
			m := message{text: string(buf[:n])}
			if strings.Contains(m.text, "READY=1") {
				m.versionErr = versionNow(d.Socket)
			}
			messages <- m
		}
	}()
	d.Start(t)
	select {
	case m := <-messages:
		if !strings.Contains(m.text, "READY=1") || m.versionErr != nil {
			t.Fatalf("first message %q; Version when it came: %v", m.text, m.versionErr)
		}
	case <-time.After(testutil.StartTimeout):
		t.Fatal("no READY=1 from a serving berthd")
	}
	d.Stop(t)
	select {
	case m := <-messages:
		if m.text != "STOPPING=1" {
			t.Errorf("message on stop: %q", m.text)
		}
	case <-time.After(testutil.StartTimeout):
		t.Error("no STOPPING=1 from a stopped berthd")
	}
}

// versionNow calls Version once, without waiting for the socket.
func versionNow(socket string) error {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = runtimeapi.NewRuntimeServiceClient(conn).Version(ctx, &runtimeapi.VersionRequest{})
	return err
}

// TestContainerRunsUnderANotifyingBerthd: berthd keeps $NOTIFY_SOCKET to
// itself, so the runc it starts does not wait for a container that never
// reports ready.
func TestContainerRunsUnderANotifyingBerthd(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "sd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "notify.sock")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e := startCtrEnvWith(t, testutil.DaemonOptions{BinDir: binDir, Env: []string{"NOTIFY_SOCKET=" + sock}})
	id := e.run(t, e.config("plain", "sh", "-c", "echo NOTIFY_SOCKET=$NOTIFY_SOCKET; sleep 1000"))
	if st := e.status(t, id); st.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container %v", st.GetState())
	}
	if out := e.exec(t, id, 10, "sh", "-c", "echo x${NOTIFY_SOCKET}x"); strings.TrimSpace(string(out.Stdout)) != "xx" {
		t.Errorf("the container sees NOTIFY_SOCKET: %q", out.Stdout)
	}
	e.stop(t, id, 0)
}

// TestContainerStopTimeoutBoundsAStuckStop: a container that cannot die
// (its cgroup frozen, so SIGKILL stays pending) fails the stop after
// ctr_stop_timeout, reloaded to 1s, instead of holding the request; once
// thawed it dies of the SIGKILL already sent.
func TestContainerStopTimeoutBoundsAStuckStop(t *testing.T) {
	e := startCtrEnv(t)
	e.d.WriteDropIn(t, "60-stop.toml", "[berth.runtime]\nctr_stop_timeout = 1\n")
	reloadAndWait(t, e.d)
	waitLog(t, e.d, `msg="reload: applied" key=berth.runtime.ctr_stop_timeout old=30 new=1`)

	id := e.run(t, e.config("stuck", "sleep", "1000"))
	resp, err := e.d.Runtime.ContainerStatus(ctxT(t, 10*time.Second), &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(resp.GetInfo()["info"]), &info); err != nil || info.Pid <= 0 {
		t.Fatalf("info %q: %v", resp.GetInfo()["info"], err)
	}
	freezer := freezerDir(t, info.Pid)
	setFreezer := func(state string) error {
		return os.WriteFile(filepath.Join(freezer, "freezer.state"), []byte(state), 0o644)
	}
	// Thawed before the cleanup removes the container (cleanups run last
	// first); the cgroup is gone if the test got that far itself.
	t.Cleanup(func() { _ = setFreezer("THAWED") })
	if err := setFreezer("FROZEN"); err != nil {
		t.Fatal(err)
	}
	for readFile(t, filepath.Join(freezer, "freezer.state")) != "FROZEN\n" {
		time.Sleep(10 * time.Millisecond)
	}

	_, err = e.d.Runtime.StopContainer(ctxT(t, time.Minute), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 0})
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "ctr_stop_timeout") {
		t.Fatalf("stopping a frozen container: want DeadlineExceeded naming ctr_stop_timeout, got %v", err)
	}
	if st := e.status(t, id); st.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("a container that did not die reported %v", st.GetState())
	}
	if err := setFreezer("THAWED"); err != nil {
		t.Fatal(err)
	}
	if st := e.waitExited(t, id, 30*time.Second); st.GetExitCode() != 137 {
		t.Errorf("exit code %d, want 137 (the SIGKILL)", st.GetExitCode())
	}
	e.stop(t, id, 0)
}

// freezerDir is the cgroup v1 freezer directory of pid; skips on hosts
// without one (cgroup v2 lets SIGKILL through a frozen cgroup).
func freezerDir(t *testing.T, pid int) string {
	t.Helper()
	for _, line := range strings.Split(readFile(t, filepath.Join("/proc", strconv.Itoa(pid), "cgroup")), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && parts[1] == "freezer" {
			return filepath.Join("/sys/fs/cgroup/freezer", parts[2])
		}
	}
	t.Skip("no cgroup v1 freezer: cannot make a container ignore SIGKILL")
	return ""
}

// TestDaemonHelpAndConfigProblems: berthd --help names each flag's key and
// default; a config with several problems is refused with all of them,
// each with file, line and, for a typo, the key meant.
func TestDaemonHelpAndConfigProblems(t *testing.T) {
	help, err := exec.Command(filepath.Join(binDir, "berthd"), "--help").Output()
	if err != nil {
		t.Fatalf("berthd --help: %v", err)
	}
	for _, line := range strings.Split(string(help), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "--") && !strings.Contains(line, "[berth.") {
			if name := f[0]; name != "--config" && name != "--config-dir" {
				t.Errorf("flag without its config key: %q", line)
			}
		}
	}
	for _, want := range []string{`[berth.runtime.log_level] (default "info")`, `[berth.api.listen] (default "/run/berth/berth.sock")`} {
		if !strings.Contains(string(help), want) {
			t.Errorf("help lacks %q:\n%s", want, help)
		}
	}

	d := testutil.NewDaemon(t, testutil.DaemonOptions{BinDir: binDir, DropIns: map[string]string{
		"50-bad.toml": "[berth.runtime]\nlog_levle = \"debug\"\ncgroup_manager = \"cgroupv3\"\n\n[berth.image]\ndefault_transport = \"docker://\"\n",
	}})
	out, err := d.Command().CombinedOutput()
	if err == nil {
		t.Fatalf("berthd started with a bad config:\n%s", out)
	}
	file := filepath.Join(d.DropInDir, "50-bad.toml")
	for _, want := range []string{
		"invalid config, 3 problems:",
		file + ":2: berth.runtime.log_levle: unknown key (did you mean berth.runtime.log_level?)",
		file + ":6: berth.image.default_transport: removed:",
		file + ":3: berth.runtime.cgroup_manager: \"cgroupv3\" is not cgroupfs or systemd",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("error lacks %q:\n%s", want, out)
		}
	}
}

// TestInfoUsesConfigKeyNames: berth info shows berthd's config under the
// names of the TOML files.
func TestInfoUsesConfigKeyNames(t *testing.T) {
	d := testutil.StartDaemon(t, testutil.DaemonOptions{BinDir: binDir,
		DropIns: map[string]string{"50-stop.toml": "[berth.runtime]\nctr_stop_timeout = 45\n"}})
	out, err := d.CLI(t, "info")
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Config struct {
			Berth struct {
				API struct {
					Listen string `json:"listen"`
				} `json:"api"`
				Runtime struct {
					StopTimeout int `json:"ctr_stop_timeout"`
				} `json:"runtime"`
			} `json:"berth"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("info: %v\n%s", err, out)
	}
	if b := info.Config.Berth; b.Runtime.StopTimeout != 45 || b.API.Listen != d.Socket {
		t.Errorf("info config %+v:\n%s", b, out)
	}
	if strings.Contains(out, `"StopTimeout"`) || strings.Contains(out, `"Berth"`) {
		t.Errorf("info carries Go field names:\n%s", out)
	}
}
