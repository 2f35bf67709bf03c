package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	goruntime "runtime"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	dialTimeout = 10 * time.Second
	// halfCloseGrace is how long the pod's answer may still come after the
	// client stopped sending, when the client's connection cannot be
	// watched (WebSocket); like socat's -t.
	halfCloseGrace = time.Second
)

// portForward copies between stream and a TCP connection to port on the
// pod's loopback, inside its network namespace. A returned error goes to
// the client's error stream; the session (other streams) goes on.
func (s *Server) portForward(ctx context.Context, podID string, port int32, stream io.ReadWriteCloser, watched bool) error {
	if port <= 0 || port > 65535 {
		return fmt.Errorf("%d is not a port", port)
	}
	nsPath, err := s.netNS(podID)
	if err != nil {
		return err
	}
	conn, err := dialInNetNS(ctx, nsPath, port)
	if err != nil {
		s.log.Debug("port-forward: dial", "pod", podID, "port", port, "error", err)
		return err
	}
	defer conn.Close()
	s.log.Debug("port-forward: connected", "pod", podID, "port", port)
	defer context.AfterFunc(ctx, func() { conn.Close() })()

	toPod, fromPod := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := io.Copy(conn, stream)
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite() // the client is done sending
		}
		toPod <- err
	}()
	go func() {
		_, err := io.Copy(stream, conn)
		fromPod <- err
	}()
	select {
	case err = <-fromPod: // the pod closed: done
	case err = <-toPod:
		// The client stopped sending; the pod may still answer. When the
		// client's connection is watched, its loss ends ctx.
		var grace <-chan time.Time
		if !watched {
			grace = time.After(halfCloseGrace)
		}
		select {
		case err2 := <-fromPod:
			err = errors.Join(err, err2)
		case <-grace:
		case <-ctx.Done():
		}
	case <-ctx.Done():
	}
	if err != nil && ctx.Err() == nil {
		s.log.Debug("port-forward: copy", "pod", podID, "port", port, "error", err)
	}
	return nil
}

// dialInNetNS connects to port on the loopback of the network namespace
// at nsPath ("" for berthd's own): 127.0.0.1 first, then ::1. A socket
// belongs to the namespace its creating thread was in, so the dial runs on
// a locked OS thread that entered it; once created the socket works from
// any thread.
func dialInNetNS(ctx context.Context, nsPath string, port int32) (net.Conn, error) {
	if nsPath == "" {
		return dialLoopback(ctx, port)
	}
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		goruntime.LockOSThread()
		conn, err, restored := dialLocked(ctx, nsPath, port)
		ch <- result{conn, err}
		if restored {
			goruntime.UnlockOSThread()
		}
		// Otherwise the thread is in the pod's namespace: it stays locked,
		// and Go ends it with this goroutine.
	}()
	r := <-ch
	return r.conn, r.err
}

// dialLocked runs on a locked thread: enter the namespace, dial, go back.
// restored says whether the thread is back in its own namespace.
func dialLocked(ctx context.Context, nsPath string, port int32) (conn net.Conn, err error, restored bool) {
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open own network namespace: %w", err), true
	}
	defer unix.Close(orig)
	target, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open pod network namespace %s: %w", nsPath, err), true
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("enter pod network namespace %s: %w", nsPath, err), true
	}
	conn, err = dialLoopback(ctx, port)
	restored = unix.Setns(orig, unix.CLONE_NEWNET) == nil
	return conn, err, restored
}

// dialLoopback dials 127.0.0.1:port, and [::1]:port if that is refused.
// IP literals only: a name lookup could run on another thread.
func dialLoopback(ctx context.Context, port int32) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	p := strconv.Itoa(int(port))
	conn, err := d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", p))
	if err == nil {
		return conn, nil
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		if c6, err6 := d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", p)); err6 == nil {
			return c6, nil
		}
	}
	return nil, err
}
