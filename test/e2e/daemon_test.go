package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
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

// waitLog waits until the daemon's log contains want.
func waitLog(t *testing.T, d *testutil.Daemon, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.Log(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("daemon log never showed %q:\n%s", want, d.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDaemonConfigPrintRoundTrips feeds `berthd config` output back to
// berthd as its only config file and expects the same output.
func TestDaemonConfigPrintRoundTrips(t *testing.T) {
	d := testutil.NewDaemon(t, testutil.DaemonOptions{BinDir: binDir,
		DropIns: map[string]string{"20-x.toml": "[berth.image]\npinned_images = [\"localhost/keep:*\"]\n"}})
	first, err := d.Command("config").Output()
	if err != nil {
		t.Fatalf("berthd config: %v", err)
	}
	file := filepath.Join(d.Dir, "printed.toml")
	if err := os.WriteFile(file, first, 0o644); err != nil {
		t.Fatal(err)
	}
	second, err := exec.Command(filepath.Join(binDir, "berthd"), "--config", file, "--config-dir", filepath.Join(d.Dir, "none.d"), "config").Output()
	if err != nil {
		t.Fatalf("berthd config of printed file: %v", err)
	}
	if string(first) != string(second) {
		t.Fatalf("printed config does not round-trip:\n--- first\n%s\n--- second\n%s", first, second)
	}
	if !strings.Contains(string(first), "\n# ") || !strings.Contains(string(first), `"localhost/keep:*"`) {
		t.Errorf("printed config should be commented and carry the drop-in's value:\n%s", first)
	}
}

// TestDaemonRejectsBadConfigNamingFileAndKey starts berthd on a drop-in
// with an unknown key and one with a bad value.
func TestDaemonRejectsBadConfigNamingFileAndKey(t *testing.T) {
	for name, tc := range map[string]struct{ content, want string }{
		"unknown key": {"[berth.runtime]\nlog_levle = \"debug\"\n", "berth.runtime.log_levle"},
		"bad value":   {"[berth.runtime]\ncgroup_manager = \"cgroupv3\"\n", "berth.runtime.cgroup_manager"},
	} {
		t.Run(name, func(t *testing.T) {
			d := testutil.NewDaemon(t, testutil.DaemonOptions{BinDir: binDir, DropIns: map[string]string{"50-bad.toml": tc.content}})
			cmd := d.Command()
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("berthd started with a bad config:\n%s", out)
			}
			file := filepath.Join(d.DropInDir, "50-bad.toml")
			if !strings.Contains(string(out), file) || !strings.Contains(string(out), tc.want) {
				t.Fatalf("error should name %s and %s:\n%s", file, tc.want, out)
			}
		})
	}
}

// TestDaemonReloadOnSIGHUP changes the log level through a drop-in: the
// change is applied and logged, an invalid file keeps the running config.
func TestDaemonReloadOnSIGHUP(t *testing.T) {
	d := testutil.StartDaemon(t, testutil.DaemonOptions{BinDir: binDir})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := d.Runtime.Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
		t.Fatal(err)
	}
	waitLog(t, d, "method=Version")

	d.WriteDropIn(t, "90-level.toml", "[berth.runtime]\nlog_level = \"info\"\n[berth]\nroot = \"/elsewhere\"\n")
	d.Signal(t, syscall.SIGHUP)
	waitLog(t, d, "key=berth.runtime.log_level old=debug new=info")
	waitLog(t, d, "needs a restart to take effect\" key=berth.root")
	before := strings.Count(d.Log(), "method=Status")
	if _, err := d.Runtime.Status(ctx, &runtimeapi.StatusRequest{}); err != nil {
		t.Fatal(err)
	}
	if strings.Count(d.Log(), "method=Status") != before {
		t.Errorf("debug request logging should stop at log_level info")
	}

	d.WriteDropIn(t, "95-broken.toml", "[berth.runtime]\nlog_level = \"shouty\"\n")
	d.Signal(t, syscall.SIGHUP)
	waitLog(t, d, "keeping the current config")
	if _, err := d.Runtime.Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
		t.Fatalf("daemon stopped serving after a bad reload: %v", err)
	}
}

// TestDaemonSocketAndUnimplemented checks the socket mode, that a second
// daemon on a live socket is refused, that a killed daemon's stale socket
// is replaced, and that an RPC berth cannot serve here (checkpointing)
// answers with a status naming it rather than failing.
func TestDaemonSocketAndUnimplemented(t *testing.T) {
	d := testutil.StartDaemon(t, testutil.DaemonOptions{BinDir: binDir})
	fi, err := os.Stat(d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket mode %v, want a 0660 socket", fi.Mode())
	}

	second := d.Command()
	out, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use") {
		t.Fatalf("a second daemon on a live socket: want an 'in use' error, got %v:\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = d.Runtime.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: "abc"})
	if c := status.Code(err); (c != codes.Unimplemented && c != codes.FailedPrecondition) || !strings.Contains(status.Convert(err).Message(), "CheckpointContainer") {
		t.Errorf("CheckpointContainer: want Unimplemented or FailedPrecondition naming the method, got %v", err)
	}
	waitLog(t, d, "method=CheckpointContainer")
	if !strings.Contains(d.Log(), "id=abc") {
		t.Errorf("debug request log should carry the id:\n%s", d.Log())
	}

	d.Kill(t)
	if _, err := os.Stat(d.Socket); err != nil {
		t.Fatalf("a killed daemon should leave its socket behind: %v", err)
	}
	d.Start(t)
	waitLog(t, d, "replaced stale socket")
	if _, err := d.Runtime.Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
		t.Fatalf("after replacing the stale socket: %v", err)
	}
}

// TestDaemonStopEndsEventStreams: a client following GetContainerEvents
// (as the kubelet does) must not hold up a graceful stop.
func TestDaemonStopEndsEventStreams(t *testing.T) {
	d := testutil.StartDaemon(t, testutil.DaemonOptions{BinDir: binDir})
	// A connection of our own: the harness closes its own before stopping.
	conn, err := grpc.NewClient("unix://"+d.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	events, err := runtimeapi.NewRuntimeServiceClient(conn).GetContainerEvents(context.Background(), &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := events.Recv()
		got <- err
	}()
	waitLog(t, d, "berthd serving")
	waitLog(t, d, "CRI stream started\" component=cri method=GetContainerEvents")
	d.Stop(t)
	if err := <-got; status.Code(err) != codes.Unavailable {
		t.Fatalf("event stream at shutdown: want Unavailable, got %v", err)
	}
	if strings.Contains(d.Log(), "did not finish in time") {
		t.Errorf("graceful stop waited for the event stream:\n%s", d.Log())
	}
}
