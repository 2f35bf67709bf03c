package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// conmon's attach protocol (see shared/reference/conmon-protocol.md §8-9).
const (
	// attachBufSize is conmon's largest payload; each packet has one more
	// byte, the stream id.
	attachBufSize = 8192
	attachStdout  = 2
	attachStderr  = 3
	// stdinChunk keeps each stdin packet well under conmon's 32 KiB read:
	// a SEQPACKET read truncates what does not fit.
	stdinChunk = 8192
	// resizeGap spaces ctl writes: conmon 2.1.x handles only the first of
	// several lines it reads at once, so lines must not queue up.
	resizeGap = 50 * time.Millisecond
)

// attach connects the client to the container's stdio through conmon.
// Closing the client detaches; the container keeps running.
func (s *Server) attach(ctx context.Context, id string, st streams, resize <-chan remotecommand.TerminalSize) error {
	t, err := s.runningTarget(id)
	if err != nil {
		return err
	}
	if t.AttachSocket == "" {
		return fmt.Errorf("attach to %s: container has no attach socket", id)
	}
	conn, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: t.AttachSocket, Net: "unixpacket"})
	if err != nil {
		return fmt.Errorf("attach to %s: connect to conmon: %w", id, err)
	}
	defer conn.Close()
	// Ending the session (client gone, container stopped, server closed)
	// closes the socket, which ends both copies.
	defer context.AfterFunc(ctx, func() { conn.Close() })()
	if resize != nil && t.TTY {
		go s.resizeLoop(ctx, id, t.ControlFIFO, resize)
	}

	outDone := make(chan error, 1)
	go func() { outDone <- copyFrames(st, t.TTY, conn) }()
	stdinDone := make(chan error, 1)
	if st.in != nil {
		go func() {
			err := copyStdin(conn, st.in)
			// Half-close: conmon then closes the container's stdin if it
			// is stdin_once (it was started without --leave-stdin-open).
			_ = conn.CloseWrite()
			stdinDone <- err
		}()
	}
	select {
	case err := <-outDone:
		return ctxOr(ctx, err)
	case err := <-stdinDone:
		if err != nil {
			s.log.Debug("attach: stdin", "id", id, "error", err)
		}
		if !t.TTY && !t.StdinOnce {
			return nil
		}
		// The container may still answer, or exit now that its stdin is
		// closed: keep its output flowing until conmon hangs up.
		return ctxOr(ctx, <-outDone)
	}
}

// ctxOr hides the error of a copy cut short by the session's end.
func ctxOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// copyFrames copies conmon's packets to the client's stdout and stderr
// until conmon closes the socket. With a TTY everything is stdout.
func copyFrames(st streams, tty bool, conn *net.UnixConn) error {
	buf := make([]byte, attachBufSize+1)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("attach: read from conmon: %w", err)
		}
		if n < 1 {
			continue
		}
		var dst io.Writer
		switch {
		case tty || buf[0] == attachStdout:
			dst = st.out
		case buf[0] == attachStderr:
			dst = st.err
		}
		if dst == nil || n == 1 {
			continue
		}
		if _, err := dst.Write(buf[1:n]); err != nil {
			return fmt.Errorf("attach: write to client: %w", err)
		}
	}
}

// copyStdin sends the client's stdin to conmon, one packet per chunk.
func copyStdin(conn *net.UnixConn, in io.Reader) error {
	buf := make([]byte, stdinChunk)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return fmt.Errorf("attach: write to conmon: %w", werr)
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("attach: read stdin: %w", err)
		}
	}
}

// resizeLoop writes "1 <height> <width>\n" to conmon's ctl FIFO for each
// resize, at most one line per resizeGap, coalescing bursts to the latest
// size. It consumes resize until it closes or the session ends.
func (s *Server) resizeLoop(ctx context.Context, id, fifo string, resize <-chan remotecommand.TerminalSize) {
	// Non-blocking open: conmon keeps a reader open while it lives;
	// without one the open fails (ENXIO) instead of hanging.
	var ctl *os.File
	if fd, err := unix.Open(fifo, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err != nil {
		s.log.Warn("attach: cannot resize: open ctl FIFO", "id", id, "path", fifo, "error", err)
	} else {
		ctl = os.NewFile(uintptr(fd), fifo)
		defer ctl.Close()
	}
	var (
		pending *remotecommand.TerminalSize
		gap     <-chan time.Time // non-nil while the last write is too recent
	)
	for {
		if pending != nil && gap == nil && ctl != nil {
			if _, err := fmt.Fprintf(ctl, "1 %d %d\n", pending.Height, pending.Width); err != nil {
				s.log.Debug("attach: resize", "id", id, "error", err)
			}
			pending, gap = nil, time.After(resizeGap)
		}
		select {
		case sz, ok := <-resize:
			if !ok {
				return
			}
			if sz.Height >= 1 && sz.Width >= 1 {
				pending = &sz
			}
		case <-gap:
			gap = nil
		case <-ctx.Done():
			return
		}
	}
}
