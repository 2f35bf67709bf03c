package cri

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/runtime"
	"github.com/berth-cri/berth/internal/stream"
)

type streamLookups struct{}

func (streamLookups) ExecTarget(id string) (runtime.ExecTarget, error) {
	if id == "stopped" {
		return runtime.ExecTarget{ID: id}, nil
	}
	if id == "running" {
		return runtime.ExecTarget{ID: id, Running: true}, nil
	}
	return runtime.ExecTarget{}, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
}

func (streamLookups) NetNSPath(id string) (string, error) {
	if id == "pod" {
		return "", nil
	}
	return "", fmt.Errorf("pod %q: %w", id, errdefs.ErrNotFound)
}

func TestStreamRPCs(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	streams, err := stream.New(stream.Config{Address: "127.0.0.1", Port: "0", WorkDir: t.TempDir()}, streamLookups{}, streamLookups{}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer streams.Close()
	cfg := config.Default()
	s := New(Deps{Config: func() *config.Config { return cfg }, Log: log, Streams: streams})
	sock := filepath.Join(t.TempDir(), "berth.sock")
	if err := s.Listen(sock); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	defer s.Stop(time.Second)
	rt := runtimeapi.NewRuntimeServiceClient(dial(t, sock))
	ctx := context.Background()

	resp, err := rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "running", Cmd: []string{"true"}, Stdout: true})
	if err != nil || !strings.HasPrefix(resp.GetUrl(), streams.URL()+"/exec/") {
		t.Errorf("Exec: %v %v", resp, err)
	}
	for _, tc := range []struct {
		name string
		err  error
		code codes.Code
	}{
		{"exec unknown", func() error {
			_, err := rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "nosuch", Cmd: []string{"true"}, Stdout: true})
			return err
		}(), codes.NotFound},
		{"exec stopped", func() error {
			_, err := rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "stopped", Cmd: []string{"true"}, Stdout: true})
			return err
		}(), codes.FailedPrecondition},
		{"exec no cmd", func() error {
			_, err := rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "running", Stdout: true})
			return err
		}(), codes.InvalidArgument},
		{"exec tty and stderr", func() error {
			_, err := rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "running", Cmd: []string{"true"}, Tty: true, Stderr: true})
			return err
		}(), codes.InvalidArgument},
		{"attach no id", func() error {
			_, err := rt.Attach(ctx, &runtimeapi.AttachRequest{Stdout: true})
			return err
		}(), codes.InvalidArgument},
		{"attach stopped", func() error {
			_, err := rt.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: "stopped", Stdout: true})
			return err
		}(), codes.FailedPrecondition},
		{"port-forward unknown", func() error {
			_, err := rt.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: "nosuch"})
			return err
		}(), codes.NotFound},
		{"port-forward bad port", func() error {
			_, err := rt.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: "pod", Port: []int32{0}})
			return err
		}(), codes.InvalidArgument},
	} {
		if status.Code(tc.err) != tc.code {
			t.Errorf("%s: got %v, want %v", tc.name, tc.err, tc.code)
		}
	}
	pf, err := rt.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: "pod", Port: []int32{80}})
	if err != nil || !strings.HasPrefix(pf.GetUrl(), streams.URL()+"/portforward/") {
		t.Errorf("PortForward: %v %v", pf, err)
	}
}

func TestStreamRPCsWithoutServer(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "berth.sock")
	startServer(t, sock)
	rt := runtimeapi.NewRuntimeServiceClient(dial(t, sock))
	_, err := rt.Exec(context.Background(), &runtimeapi.ExecRequest{ContainerId: "x", Cmd: []string{"true"}, Stdout: true})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("want Unimplemented, got %v", err)
	}
}
