package container

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/runtime"
)

// stopOp is a stop in progress; a second stop with a shorter timeout
// brings its SIGKILL forward instead of starting another escalation.
type stopOp struct {
	deadline time.Time
	changed  chan struct{}
	// done is closed when the stop that drives the escalation returns
	// (its client may go away before the container is gone).
	done chan struct{}
}

// Stop stops the container: its stop signal, then SIGKILL once timeout
// seconds have passed (at once for 0). Stopping a stopped or unknown
// container is not an error: the CRI makes stop idempotent, and the
// kubelet retries stops of containers already removed. A concurrent second stop waits for the first (after
// shortening its timeout if its own is shorter), and takes over if the
// first one's client leaves.
func (m *Manager) Stop(ctx context.Context, id string, timeout int64) error {
	c, err := m.get(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return m.stop(ctx, c, timeout)
}

func (m *Manager) stop(ctx context.Context, c *container, timeout int64) error {
	deadline := time.Now().Add(time.Duration(max(timeout, 0)) * time.Second)
	for {
		c.mu.Lock()
		if c.st.State == StateExited {
			c.mu.Unlock()
			return nil
		}
		op := c.stopping
		if op == nil {
			op = &stopOp{deadline: deadline, changed: make(chan struct{}), done: make(chan struct{})}
			c.stopping = op
			created := c.st.State == StateCreated
			c.mu.Unlock()
			return m.drive(ctx, c, op, timeout, created)
		}
		if deadline.Before(op.deadline) {
			op.deadline = deadline
			close(op.changed)
			op.changed = make(chan struct{})
		}
		c.mu.Unlock()
		select {
		case <-c.exited:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("stop container %s: %w", c.meta.ID, ctx.Err())
		case <-op.done:
			// The first stop gave up; take over.
		}
	}
}

// drive sends the stop signal, then SIGKILL at op's deadline, and waits
// for the exit.
func (m *Manager) drive(ctx context.Context, c *container, op *stopOp, timeout int64, created bool) error {
	defer func() {
		c.mu.Lock()
		c.stopping = nil
		c.mu.Unlock()
		close(op.done)
	}()
	sig := parseSignal(c.meta.StopSignal)
	if sig == 0 {
		sig = unix.SIGTERM
	}
	if timeout <= 0 || created {
		sig = unix.SIGKILL
	}
	m.signal(ctx, c, sig)
	for sig != unix.SIGKILL {
		c.mu.Lock()
		wait, changed := time.Until(op.deadline), op.changed
		c.mu.Unlock()
		timer := time.NewTimer(wait)
		select {
		case <-c.exited:
			timer.Stop()
			return nil
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("stop container %s: %w", c.meta.ID, ctx.Err())
		case <-changed:
			timer.Stop()
			continue
		case <-timer.C:
		}
		m.log.Info("container did not stop in time; killing it", "id", c.meta.ID, "signal", c.meta.StopSignal, "timeout", timeout)
		sig = unix.SIGKILL
		m.signal(ctx, c, sig)
	}
	return m.awaitExit(ctx, c)
}

// awaitExit waits for the exit of a killed container. If its process is
// gone and no exit is reported, conmon is checked: a dead conmon writes
// no exit file, and the container must not stay "running" forever. A
// container still there ctr_stop_timeout seconds after SIGKILL (stuck in
// the kernel, or frozen) fails the stop, as in CRI-O: the kubelet retries.
func (m *Manager) awaitExit(ctx context.Context, c *container) error {
	init := c.snapshot().Init
	gone := make(chan struct{})
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	limit := m.cfg().Berth.Runtime.StopTimeout
	tooLong := time.NewTimer(time.Duration(limit) * time.Second)
	defer tooLong.Stop()
	go func() {
		if init.WaitExit(wctx) == nil {
			close(gone)
		}
	}()
	var grace <-chan time.Time
	for {
		select {
		case <-c.exited:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("stop container %s: %w", c.meta.ID, ctx.Err())
		case <-tooLong.C:
			return fmt.Errorf("stop container %s: still running %ds after SIGKILL (ctr_stop_timeout): %w", c.meta.ID, limit, errdefs.ErrDeadlineExceeded)
		case <-gone:
			gone = nil
			grace = time.After(exitGrace)
		case <-grace:
			m.checkConmon(c)
			select {
			case <-c.exited:
				return nil
			default:
			}
			grace = time.After(exitGrace)
		}
	}
}

// signal delivers sig to the container: through a pidfd to its init, or
// through the runtime to every process of its cgroup when it shares the
// host's PID namespace (killing the init would not end the others).
func (m *Manager) signal(ctx context.Context, c *container, sig syscall.Signal) {
	init := c.snapshot().Init
	if c.meta.HostPID || init.PID <= 0 {
		if err := m.oci(c.meta.Runtime).Kill(ctx, c.meta.ID, sig, c.meta.HostPID); err != nil && !errors.Is(err, runtime.ErrNotExist) {
			m.log.Warn("signal container", "id", c.meta.ID, "signal", sig, "error", err)
		}
		return
	}
	if err := init.Signal(sig); err != nil {
		m.log.Warn("signal container", "id", c.meta.ID, "signal", sig, "error", err)
	}
}

// stopSignal picks the signal Stop sends first: the request's, else the
// image's STOPSIGNAL, else SIGTERM.
func stopSignal(req runtimeapi.Signal, image string) string {
	if req != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		return strings.TrimPrefix(req.String(), "SIGNAL_")
	}
	if image != "" && parseSignal(image) != 0 {
		if n, err := strconv.Atoi(image); err == nil {
			return unix.SignalName(syscall.Signal(n))
		}
		s := strings.ToUpper(image)
		if !strings.HasPrefix(s, "SIG") {
			s = "SIG" + s
		}
		return s
	}
	return "SIGTERM"
}

// parseSignal reads a signal name ("SIGTERM", "TERM", "SIGRTMIN+3",
// "SIGRTMINPLUS3") or number; 0 when unknown, SIGTERM for "".
func parseSignal(s string) syscall.Signal {
	if s == "" {
		return unix.SIGTERM
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n > 0 && n <= 64 {
			return syscall.Signal(n)
		}
		return 0
	}
	s = strings.ToUpper(s)
	if !strings.HasPrefix(s, "SIG") {
		s = "SIG" + s
	}
	const rtmin, rtmax = 34, 64
	switch {
	case s == "SIGIOT":
		return unix.SIGABRT
	case s == "SIGPOLL":
		return unix.SIGIO
	case s == "SIGCLD":
		return unix.SIGCHLD
	case s == "SIGRTMIN":
		return rtmin
	case s == "SIGRTMAX":
		return rtmax
	case strings.HasPrefix(s, "SIGRTMINPLUS"), strings.HasPrefix(s, "SIGRTMIN+"):
		n, err := strconv.Atoi(strings.TrimLeft(strings.TrimPrefix(s, "SIGRTMIN"), "PLUS+"))
		if err == nil && rtmin+n <= rtmax {
			return syscall.Signal(rtmin + n)
		}
	case strings.HasPrefix(s, "SIGRTMAXMINUS"), strings.HasPrefix(s, "SIGRTMAX-"):
		n, err := strconv.Atoi(strings.TrimLeft(strings.TrimPrefix(s, "SIGRTMAX"), "MINUS-"))
		if err == nil && rtmax-n >= rtmin {
			return syscall.Signal(rtmax - n)
		}
	}
	return unix.SignalNum(s)
}
