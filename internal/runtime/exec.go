package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ExecResult is the outcome of ExecSync.
type ExecResult struct {
	Stdout, Stderr []byte
	ExitCode       int32
	// TimedOut is set when the command was killed at the timeout.
	TimedOut bool
	// Truncated is set when output beyond the cap was discarded.
	Truncated bool
}

// TimedOutMessage is what a timed-out command reports on stderr, as
// conmon (and so CRI-O) does.
const TimedOutMessage = "command timed out"

// drainGrace is how long output is still read after the command exited:
// a background process it left behind may hold the pipes open forever,
// while what the command itself wrote is already buffered.
const drainGrace = 25 * time.Millisecond

// ExecSync runs p in container id and collects its output, both streams
// together capped at limit bytes so that the reply fits the caller's
// message size (the rest is read and dropped, so the command never
// blocks on a full pipe, and memory stays bounded whatever it writes). It runs `runc exec` directly rather than
// through `conmon -e --sync`: one process less to start, no temporary
// log file to write and parse back, and the same result. runc exec
// (without --detach) is a subreaper for the command, so the command is
// always reaped by it and nothing is left to berthd. On timeout the
// command and its descendants are killed and the result says so, with a
// non-zero exit code and no error, which is what kubelet probes expect.
func (r OCI) ExecSync(ctx context.Context, id string, p *specs.Process, timeout time.Duration, limit int) (*ExecResult, error) {
	spec, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode exec process: %w", err)
	}
	// The process spec goes through a memfd: no temporary file to create
	// and remove on disk.
	mfd, err := unix.MemfdCreate("berth-exec", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd for exec process: %w", err)
	}
	specFile := os.NewFile(uintptr(mfd), "exec-process.json")
	defer specFile.Close()
	if _, err := specFile.Write(spec); err != nil {
		return nil, fmt.Errorf("write exec process: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("exec stdout pipe: %w", err)
	}
	defer outR.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		outW.Close()
		return nil, fmt.Errorf("exec stderr pipe: %w", err)
	}
	defer errR.Close()

	args := append(r.globalArgs(), "exec", "--process", "/proc/self/fd/3", id)
	cmd := exec.Command(r.Path, args...)
	cmd.ExtraFiles = []*os.File{specFile}
	cmd.Stdout, cmd.Stderr = outW, errW
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		return nil, fmt.Errorf("start %s exec: %w", r.Path, err)
	}
	res := &ExecResult{}
	var wg sync.WaitGroup
	wg.Add(2)
	var outTrunc, errTrunc bool
	budget := &outputBudget{left: int64(limit)}
	go func() { defer wg.Done(); res.Stdout, outTrunc = budget.read(outR) }()
	go func() { defer wg.Done(); res.Stderr, errTrunc = budget.read(errR) }()

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var timer <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	var waitErr, ctxErr error
	select {
	case waitErr = <-done:
	case <-timer:
		res.TimedOut = true
		waitErr = killExec(cmd, done)
	case <-ctx.Done():
		ctxErr = ctx.Err()
		waitErr = killExec(cmd, done)
	}
	deadline := time.Now().Add(drainGrace)
	_ = outR.SetReadDeadline(deadline)
	_ = errR.SetReadDeadline(deadline)
	wg.Wait()
	res.Truncated = outTrunc || errTrunc
	if ctxErr != nil {
		return nil, fmt.Errorf("exec in %s: %w", id, ctxErr)
	}
	if res.TimedOut {
		res.ExitCode = -1
		res.Stderr = append(res.Stderr, TimedOutMessage...)
		return res, nil
	}
	var ee *exec.ExitError
	switch {
	case waitErr == nil:
	case errors.As(waitErr, &ee):
		res.ExitCode = int32(ee.ExitCode())
	default:
		return nil, fmt.Errorf("exec in %s: %w", id, waitErr)
	}
	return res, nil
}

// killExec kills the command and everything below it (runc exec is the
// parent of the command; the command may have started more), then waits
// for runc to report. If runc itself is stuck it is killed as well.
func killExec(cmd *exec.Cmd, done <-chan error) error {
	for _, pid := range descendants(cmd.Process.Pid) {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	select {
	case err := <-done:
		return err
	case <-time.After(2 * time.Second):
		_ = cmd.Process.Kill()
		return <-done
	}
}

// outputBudget is the number of bytes the streams of one exec may still
// keep between them: whichever writes first gets it (CVE-2022-1708).
type outputBudget struct{ left int64 }

// take reserves up to n bytes and returns how many it got.
func (b *outputBudget) take(n int) int {
	for {
		left := atomic.LoadInt64(&b.left)
		got := min(int64(n), left)
		if got <= 0 {
			return 0
		}
		if atomic.CompareAndSwapInt64(&b.left, left, left-got) {
			return int(got)
		}
	}
}

// read reads r to EOF (or its deadline), keeping what the budget allows;
// truncated reports that bytes were dropped.
func (b *outputBudget) read(r *os.File) (out []byte, truncated bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			keep := b.take(n)
			out = append(out, buf[:keep]...)
			truncated = truncated || keep < n
		}
		if err != nil {
			return out, truncated
		}
	}
}
