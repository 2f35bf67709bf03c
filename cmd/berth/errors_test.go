package main

import (
	"fmt"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestPlainErrorSaysThingsOnce(t *testing.T) {
	id := "6f45da2b7945f473ad845c709b733f039131826b9d64f308e20ee40fcd8398cb"
	for _, tc := range []struct {
		err  error
		want string
	}{
		// The runtime's message starts with berth's context.
		{fmt.Errorf("pull image r.io/a:1: %w", status.Error(codes.NotFound, "pull image r.io/a:1: manifest unknown")),
			"pull image r.io/a:1: manifest unknown"},
		// It names the object of berth's context.
		{fmt.Errorf("exec in %s: %w", id, status.Error(codes.FailedPrecondition, "container "+id+" is created, not running")),
			"container " + id + " is created, not running"},
		{fmt.Errorf("pull image UPPER/case: %w", status.Error(codes.InvalidArgument, `image "UPPER/case" is not a valid image name`)),
			`image "UPPER/case" is not a valid image name`},
		// Only the repeated piece goes.
		{fmt.Errorf("run: remove image r.io/a:1: %w", status.Error(codes.FailedPrecondition, "remove image r.io/a:1 (abc): in use")),
			"run: remove image r.io/a:1 (abc): in use"},
		// A plain word, a name or a different object is kept.
		{fmt.Errorf("create container app: %w", status.Error(codes.NotFound, `image "app" not found`)),
			`create container app: image "app" not found`},
		{fmt.Errorf("list containers: %w", status.Error(codes.Internal, "containers are gone")),
			"list containers: containers are gone"},
		{fmt.Errorf("exec in %s: %w", id, status.Error(codes.NotFound, "container abc123: not found")),
			"exec in " + id + ": container abc123: not found"},
		{status.Error(codes.Internal, "boom"), "boom"},
	} {
		if got := plainError(tc.err); got != tc.want {
			t.Errorf("plainError(%q) =\n %q, want\n %q", tc.err, got, tc.want)
		}
	}
}

func TestConnectError(t *testing.T) {
	for _, tc := range []struct {
		path  string
		cause error
		want  string
	}{
		{"/run/berth/berth.sock", syscall.ENOENT, "cannot connect to /run/berth/berth.sock: is berthd running?"},
		{"/tmp/b/berth.sock", syscall.ECONNREFUSED, "cannot connect to /tmp/b/berth.sock: is berthd running?"},
		{"/run/containerd/containerd.sock", syscall.ENOENT, "cannot connect to /run/containerd/containerd.sock: is the runtime running?"},
		{"/run/berth/berth.sock", syscall.EACCES, "cannot connect to /run/berth/berth.sock: permission denied (run as root or as a member of the socket's group)"},
	} {
		err := fmt.Errorf("get version: %w", &connectError{path: tc.path, cause: fmt.Errorf("dial unix %s: %w", tc.path, tc.cause)})
		if got := plainError(err); got != tc.want {
			t.Errorf("%s, %v: %q, want %q", tc.path, tc.cause, got, tc.want)
		}
		if status.Code(err) != codes.Unavailable {
			t.Errorf("%s: code %v, want Unavailable", tc.path, status.Code(err))
		}
	}
}
