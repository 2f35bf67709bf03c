package cri

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/testutil"
)

func startServer(t *testing.T, sock string) (*Server, *testutil.SyncBuffer) {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	cfg := config.Default()
	s := New(Deps{
		Config:  func() *config.Config { return cfg },
		Log:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Version: "test",
	})
	if err := s.Listen(sock); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Stop(time.Second) })
	return s, logs
}

func dial(t *testing.T, sock string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestServesVersionStatusAndUnimplemented(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "sub", "berth.sock")
	_, logs := startServer(t, sock)
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want 0660", fi.Mode().Perm())
	}
	rt := runtimeapi.NewRuntimeServiceClient(dial(t, sock))
	ctx := context.Background()

	v, err := rt.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if v.RuntimeName != "berth" || v.RuntimeApiVersion != "v1" || v.RuntimeVersion != "test" {
		t.Errorf("version = %+v", v)
	}

	st, err := rt.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	conds := map[string]*runtimeapi.RuntimeCondition{}
	for _, c := range st.Status.Conditions {
		conds[c.Type] = c
	}
	if !conds[runtimeapi.RuntimeReady].GetStatus() {
		t.Errorf("runtime not ready: %+v", conds)
	}
	if n := conds[runtimeapi.NetworkReady]; n == nil || n.Status || n.Reason == "" {
		t.Errorf("network condition without a network manager should be false with a reason: %+v", n)
	}
	if !strings.Contains(st.Info["config"], "/run/berth/berth.sock") {
		t.Errorf("verbose status should carry the config: %v", st.Info)
	}

	rc, err := rt.RuntimeConfig(ctx, &runtimeapi.RuntimeConfigRequest{})
	if err != nil || rc.Linux.CgroupDriver != runtimeapi.CgroupDriver_CGROUPFS {
		t.Errorf("runtime config = %v, %v", rc, err)
	}

	_, err = rt.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: "abc"})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("Attach: want Unimplemented, got %v", err)
	}
	if !strings.Contains(logs.String(), "method=Attach") || !strings.Contains(logs.String(), "id=abc") || !strings.Contains(logs.String(), "duration=") {
		t.Errorf("requests must be logged at debug with method, id and duration:\n%s", logs)
	}
}

func TestStaleSocketIsReplacedLiveOneRefused(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "berth.sock")

	// A socket file nobody listens on any more, as a killed daemon leaves.
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("stale socket should still exist: %v", err)
	}
	startServer(t, sock)

	other := New(Deps{Config: config.Default, Log: slog.New(slog.DiscardHandler)})
	err = other.Listen(sock)
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second daemon on a live socket: want an 'in use' error, got %v", err)
	}
	// The first server must still answer.
	if _, err := runtimeapi.NewRuntimeServiceClient(dial(t, sock)).Version(context.Background(), &runtimeapi.VersionRequest{}); err != nil {
		t.Fatalf("first server stopped answering: %v", err)
	}
}
