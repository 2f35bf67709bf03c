package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Proc identifies one process across pid reuse: a pid plus its start
// time (field 22 of /proc/<pid>/stat, in clock ticks since boot). Both
// are kept in the container's status record, so a later berthd can tell
// "conmon is still running" from "some other process got its pid".
type Proc struct {
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"`
}

// procStat is the part of /proc/<pid>/stat berth reads.
type procStat struct {
	state     byte
	ppid      int
	session   int
	startTime uint64
}

// readStat parses /proc/<pid>/stat. The command name (field 2) may hold
// spaces and parentheses, so fields are counted from its closing ')'.
func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return procStat{}, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	// Fields after ')': 3 state, 4 ppid, 5 pgrp, 6 session, ... 22 starttime.
	f := strings.Fields(string(data[i+2:]))
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("short /proc/%d/stat", pid)
	}
	var st procStat
	st.state = f[0][0]
	st.ppid, _ = strconv.Atoi(f[1])
	st.session, _ = strconv.Atoi(f[3])
	st.startTime, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("start time in /proc/%d/stat: %w", pid, err)
	}
	return st, nil
}

// NewProc records pid with its current start time.
func NewProc(pid int) (Proc, error) {
	st, err := readStat(pid)
	if err != nil {
		return Proc{}, fmt.Errorf("process %d: %w", pid, err)
	}
	return Proc{PID: pid, StartTime: st.startTime}, nil
}

// Alive reports whether p still runs: same pid, same start time, and
// not a zombie. A zombie counts as dead: its exit is final even if
// nobody has reaped it yet (a PID 1 that reaps late leaves them around).
func (p Proc) Alive() bool {
	if p.PID <= 0 {
		return false
	}
	st, err := readStat(p.PID)
	if err != nil {
		return false
	}
	return st.startTime == p.StartTime && st.state != 'Z' && st.state != 'X'
}

// Signal sends sig to p through a pidfd, checking the start time after
// opening it so that a recycled pid is never signalled. A process that
// is already gone is not an error.
func (p Proc) Signal(sig syscall.Signal) error {
	if p.PID <= 0 {
		return nil
	}
	fd, err := unix.PidfdOpen(p.PID, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		if errors.Is(err, unix.ENOSYS) {
			return p.signalNoPidfd(sig)
		}
		return fmt.Errorf("pidfd_open %d: %w", p.PID, err)
	}
	defer unix.Close(fd)
	if st, err := readStat(p.PID); err != nil || st.startTime != p.StartTime {
		return nil
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal %d to %d: %w", sig, p.PID, err)
	}
	return nil
}

// signalNoPidfd is the fallback for kernels before 5.3; the window
// between the check and the kill is tiny but real.
func (p Proc) signalNoPidfd(sig syscall.Signal) error {
	if st, err := readStat(p.PID); err != nil || st.startTime != p.StartTime {
		return nil
	}
	if err := unix.Kill(p.PID, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal %d to %d: %w", sig, p.PID, err)
	}
	return nil
}

// WaitExitFD returns a pidfd of p that becomes readable when it exits,
// or -1 when p is already gone.
func (p Proc) WaitExitFD() (int, error) {
	fd, err := unix.PidfdOpen(p.PID, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return -1, nil
		}
		return -1, fmt.Errorf("pidfd_open %d: %w", p.PID, err)
	}
	if st, err := readStat(p.PID); err != nil || st.startTime != p.StartTime {
		unix.Close(fd)
		return -1, nil
	}
	return fd, nil
}

// children lists the children of pid across all its threads.
func children(pid int) []int {
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	var out []int
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		out = pidList(data, out)
	}
	return out
}

// pidList appends the pids of a /proc children file to out.
func pidList(data []byte, out []int) []int {
	for _, f := range strings.Fields(string(data)) {
		if c, err := strconv.Atoi(f); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// descendants lists pid's descendants, children before grandchildren.
func descendants(pid int) []int {
	var out []int
	queue := children(pid)
	seen := map[int]bool{}
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		if seen[c] {
			continue
		}
		seen[c] = true
		out = append(out, c)
		queue = append(queue, children(c)...)
	}
	return out
}

// readPidFile reads a pid file as conmon and runc write it: a decimal
// number, with or without a newline.
func readPidFile(p string) (int, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s holds %q", p, data)
	}
	return pid, nil
}

// WaitExit blocks until p exits or ctx ends. It is event driven: the
// pidfd becomes readable when the process exits (as a zombie too). It
// waits in poll(2), level-triggered, together with a pipe that ctx closes,
// so an exit at any moment after the pidfd is opened is seen.
func (p Proc) WaitExit(ctx context.Context) error {
	if p.PID <= 0 {
		return nil
	}
	fd, err := unix.PidfdOpen(p.PID, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("pidfd_open %d: %w", p.PID, err)
	}
	defer unix.Close(fd)
	if st, err := readStat(p.PID); err != nil || st.startTime != p.StartTime || st.state == 'Z' {
		return nil
	}
	cancelR, cancelW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("wait for %d: %w", p.PID, err)
	}
	defer cancelR.Close()
	stop := context.AfterFunc(ctx, func() { cancelW.Close() })
	defer func() {
		if stop() {
			cancelW.Close()
		}
	}()
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(cancelR.Fd()), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait for %d: %w", p.PID, err)
		}
		if fds[0].Revents != 0 {
			return nil
		}
		if fds[1].Revents != 0 {
			return ctx.Err()
		}
	}
}
