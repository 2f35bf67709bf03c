package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// How berth words its errors: one line per failure, "berth: " and a
// message that says what failed once. berth adds its own context ("pull
// image X") only where the runtime's message lacks it, and a hint where
// the next step is plain.

// plainError prints err with the gRPC status of each RPC failure in it
// reduced to the status message ("rpc error: code = ... desc = "
// dropped), and with berth's context before it dropped where the message
// already says it.
func plainError(err error) string {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var lines []string
		for _, e := range joined.Unwrap() {
			lines = append(lines, plainError(e))
		}
		return strings.Join(lines, "\n")
	}
	var ce *connectError
	if errors.As(err, &ce) {
		return ce.Error()
	}
	msg := err.Error()
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		return msg
	}
	inner := se.(error).Error()
	st := se.GRPCStatus()
	i := strings.Index(msg, inner)
	if st == nil || i < 0 {
		return msg
	}
	runtimeMsg := st.Message()
	prefix := strings.Split(strings.TrimSuffix(msg[:i], ": "), ": ")
	for len(prefix) > 0 && repeats(runtimeMsg, prefix[len(prefix)-1]) {
		prefix = prefix[:len(prefix)-1]
	}
	return strings.Join(append(prefix, runtimeMsg), ": ") + msg[i+len(inner):]
}

// repeats reports whether the runtime's message already says a piece of
// berth's context: it starts with it ("pull image X: pull image X: …"),
// or names its object, an ID or image reference ("exec in ID: container
// ID is not running").
func repeats(runtimeMsg, context string) bool {
	if context == "" || strings.HasPrefix(runtimeMsg, context) {
		return true
	}
	words := strings.Fields(context)
	if len(words) < 2 {
		return false
	}
	object := words[len(words)-1]
	if !strings.ContainsAny(object, "0123456789:/.@_-") {
		// A plain word ("containers", or a name such as "web") may
		// well appear in a message about something else.
		return false
	}
	for _, token := range strings.FieldsFunc(runtimeMsg, func(r rune) bool {
		return r == ' ' || strings.ContainsRune(`"'()[],`, r)
	}) {
		if strings.TrimSuffix(token, ":") == object {
			return true
		}
	}
	return false
}

// exitError ends berth with a given code, and a message when msg is set:
// exec passes the command's own exit code through.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return fmt.Sprintf("exit status %d", e.code)
}

// connectError is a runtime socket berth could not connect to.
type connectError struct {
	path  string
	cause error
}

func (e *connectError) Error() string {
	switch {
	case errors.Is(e.cause, syscall.ENOENT), errors.Is(e.cause, syscall.ECONNREFUSED):
		daemon := "the runtime"
		if filepath.Base(e.path) == filepath.Base(defaultEndpoint) {
			daemon = "berthd"
		}
		return fmt.Sprintf("cannot connect to %s: is %s running?", e.path, daemon)
	case errors.Is(e.cause, syscall.EACCES):
		return fmt.Sprintf("cannot connect to %s: permission denied (run as root or as a member of the socket's group)", e.path)
	}
	return fmt.Sprintf("cannot connect to %s: %v", e.path, e.cause)
}

func (e *connectError) Unwrap() error { return e.cause }

// GRPCStatus keeps the failure an Unavailable status for code that asks.
func (e *connectError) GRPCStatus() *status.Status { return status.New(codes.Unavailable, e.Error()) }

// dialer connects to a unix socket and remembers why it last failed,
// which gRPC only keeps as text in an Unavailable status.
type dialer struct {
	mu      sync.Mutex
	lastErr error
}

// dial connects to addr, gRPC's "unix:///path" or "unix:path".
func (d *dialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	path := strings.TrimPrefix(addr, "unix:")
	if strings.HasPrefix(path, "//") {
		path = strings.TrimPrefix(path, "//")
	}
	var nd net.Dialer
	conn, err := nd.DialContext(ctx, "unix", path)
	d.mu.Lock()
	d.lastErr = nil
	if err != nil {
		d.lastErr = &connectError{path: path, cause: err}
	}
	d.mu.Unlock()
	return conn, err
}

// failure is the connect error behind an Unavailable err, or err.
func (d *dialer) failure(err error) error {
	if status.Code(err) != codes.Unavailable {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lastErr != nil {
		return d.lastErr
	}
	return err
}

func (d *dialer) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return d.failure(invoker(ctx, method, req, reply, cc, opts...))
}

func (d *dialer) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	return s, d.failure(err)
}
