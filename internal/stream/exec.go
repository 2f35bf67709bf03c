package stream

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/runtime"
)

const (
	// drainTimeout is how long output is still copied after the runtime
	// exited, for processes the command left behind holding its stdout.
	drainTimeout = 2 * time.Second
	// runtimeExitWait is how long the runtime gets to exit once its
	// command was killed, before it is killed too.
	runtimeExitWait = time.Second
	// killTimeout bounds the wait for a killed runtime.
	killTimeout = 5 * time.Second
	// pidFileWait bounds the wait for the runtime's pid file when a
	// session ends right after it started.
	pidFileWait = 2 * time.Second
	// firstSizeWait is how long a TTY exec waits for the client's first
	// terminal size before starting, so the command sees it at once.
	firstSizeWait = 100 * time.Millisecond
)

// runtimePATH is the whole environment of the runtime process; the
// command's own comes from the process spec.
const runtimePATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// exec runs cmd in the container and returns nil, a utilexec.ExitError
// carrying its non-zero exit code, or an error when it could not be run.
func (s *Server) exec(ctx context.Context, id string, cmd []string, st streams, tty bool, resize <-chan remotecommand.TerminalSize) error {
	if len(cmd) == 0 {
		return fmt.Errorf("exec: no command: %w", errdefs.ErrInvalidArgument)
	}
	t, err := s.runningTarget(id)
	if err != nil {
		return err
	}
	proc, err := execProcess(t, cmd, tty)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(s.cfg.WorkDir, "exec-")
	if err != nil {
		return fmt.Errorf("exec in %s: %w", id, err)
	}
	defer os.RemoveAll(dir)
	procFile, pidFile, logFile := filepath.Join(dir, "process.json"), filepath.Join(dir, "pid"), filepath.Join(dir, "log.json")
	b, err := json.Marshal(proc)
	if err != nil {
		return fmt.Errorf("exec in %s: encode process: %w", id, err)
	}
	if err := os.WriteFile(procFile, b, 0o600); err != nil {
		return fmt.Errorf("exec in %s: %w", id, err)
	}
	// Not bound to ctx: the session's end is handled by runTTY/runPipes.
	c := t.Runtime.Command(context.Background(), "--log", logFile, "--log-format", "json", "exec", "--process", procFile, "--pid-file", pidFile, t.ID)
	c.Env = []string{runtimePATH}
	s.log.Debug("exec", "id", id, "cmd", cmd, "tty", tty)
	start := time.Now()
	st, moved := counted(st)
	defer func() { releaseMemory(moved()) }()
	if tty {
		err = s.runTTY(ctx, c, pidFile, st, resize)
	} else {
		err = s.runPipes(ctx, c, pidFile, st, proc.User)
	}
	err = exitResult(id, err, logFile)
	s.log.Debug("exec done", "id", id, "result", err, "ended", ctx.Err() != nil, "took", time.Since(start))
	return err
}

// execProcess is the container's process with cmd as its arguments.
func execProcess(t runtime.ExecTarget, cmd []string, tty bool) (*specs.Process, error) {
	if t.Process == nil {
		return nil, fmt.Errorf("exec in %s: the container's process is unknown", t.ID)
	}
	proc := *t.Process
	proc.Args = cmd
	proc.CommandLine = ""
	proc.Terminal = tty
	proc.ConsoleSize = nil
	return &proc, nil
}

// runPipes runs c with pipes for the requested streams; the unrequested
// ones are /dev/null.
func (s *Server) runPipes(ctx context.Context, c *exec.Cmd, pidFile string, st streams, user specs.User) error {
	var (
		child, parent            []*os.File // the runtime's ends and ours
		stdinW, stdoutR, stderrR *os.File
	)
	defer func() {
		for _, f := range append(child, parent...) {
			f.Close()
		}
	}()
	pipe := func(childReads bool) (mine, theirs *os.File, err error) {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, nil, fmt.Errorf("exec: %w", err)
		}
		mine, theirs = r, w
		if childReads {
			mine, theirs = w, r
		}
		// The command may reopen /proc/self/fd/N as its own user.
		_ = theirs.Chown(int(user.UID), int(user.GID))
		child, parent = append(child, theirs), append(parent, mine)
		return mine, theirs, nil
	}
	var err error
	if st.in != nil {
		var r *os.File
		if stdinW, r, err = pipe(true); err != nil {
			return err
		}
		c.Stdin = r
	}
	if st.out != nil {
		var w *os.File
		if stdoutR, w, err = pipe(false); err != nil {
			return err
		}
		c.Stdout = w
	}
	if st.err != nil {
		var w *os.File
		if stderrR, w, err = pipe(false); err != nil {
			return err
		}
		c.Stderr = w
	}
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		return fmt.Errorf("exec: start %s: %w", c.Path, err)
	}
	for _, f := range child {
		f.Close()
	}
	child = nil
	if stdinW != nil {
		go func() {
			_, _ = io.Copy(stdinW, st.in)
			stdinW.Close()
		}()
	}
	var copiers sync.WaitGroup
	for _, p := range []struct {
		w io.Writer
		r *os.File
	}{{st.out, stdoutR}, {st.err, stderrR}} {
		if p.r == nil {
			continue
		}
		copiers.Add(1)
		go func() {
			defer copiers.Done()
			_, _ = io.Copy(p.w, p.r)
		}()
	}
	err = waitOrKill(ctx, c, pidFile)
	if stdinW != nil {
		stdinW.Close()
	}
	drain(&copiers, []*os.File{stdoutR, stderrR})
	return err
}

// runTTY runs c on a pty; the runtime gives the command a terminal of its
// own, relays it, and copies our pty's size to it on SIGWINCH.
func (s *Server) runTTY(ctx context.Context, c *exec.Cmd, pidFile string, st streams, resize <-chan remotecommand.TerminalSize) error {
	var size *pty.Winsize
	if resize != nil {
		t := time.NewTimer(firstSizeWait)
		select {
		case sz, ok := <-resize:
			if ok {
				size = &pty.Winsize{Rows: sz.Height, Cols: sz.Width}
			} else {
				resize = nil
			}
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	// No new session (and so no controlling terminal): berthd's reaper
	// takes zombies outside its session for orphans it must reap, and
	// would steal the runtime's exit status from c.Wait. The runtime
	// reads the size from its stdin when told by SIGWINCH, which is sent
	// by hand below.
	ptmx, err := pty.StartWithAttrs(c, size, &syscall.SysProcAttr{Setpgid: true})
	if err != nil {
		return fmt.Errorf("exec: start %s on a pty: %w", c.Path, err)
	}
	defer ptmx.Close()
	done := make(chan struct{})
	defer close(done)
	if resize != nil {
		go func() {
			for {
				select {
				case sz, ok := <-resize:
					if !ok {
						return
					}
					if err := pty.Setsize(ptmx, &pty.Winsize{Rows: sz.Height, Cols: sz.Width}); err != nil {
						s.log.Debug("exec: resize", "error", err)
						continue
					}
					_ = c.Process.Signal(syscall.SIGWINCH)
				case <-done:
					return
				}
			}
		}()
	}
	if st.in != nil {
		go func() { _, _ = io.Copy(ptmx, st.in) }()
	}
	out := st.out
	if out == nil {
		out = io.Discard
	}
	var outputs sync.WaitGroup
	outputs.Add(1)
	go func() {
		defer outputs.Done()
		_, _ = io.Copy(out, ptmx) // ends with EIO once the runtime closed the pty
	}()
	err = waitOrKill(ctx, c, pidFile)
	drain(&outputs, []*os.File{ptmx})
	return err
}

// waitOrKill waits for the runtime; when ctx ends first it kills the
// command and the runtime, then waits.
func waitOrKill(ctx context.Context, c *exec.Cmd, pidFile string) error {
	waited := make(chan error, 1)
	go func() { waited <- c.Wait() }()
	select {
	case err := <-waited:
		return err
	case <-ctx.Done():
	}
	// The runtime writes the pid file just after starting the command,
	// which may already be running (and talking): wait for it.
	pid := readPid(pidFile)
	for wait := time.Now().Add(pidFileWait); pid == 0 && time.Now().Before(wait); pid = readPid(pidFile) {
		select {
		case err := <-waited:
			return err
		case <-time.After(10 * time.Millisecond):
		}
	}
	// Kill the command and its group (the runtime makes it a session
	// leader; its pid cannot be reused before the runtime, its parent,
	// reaped it), and let the runtime reap it and exit. The runtime is
	// killed only if it does not: its orphans would go to berthd.
	if pid > 0 {
		_ = unix.Kill(-pid, unix.SIGKILL)
		_ = unix.Kill(pid, unix.SIGKILL)
		select {
		case err := <-waited:
			return err
		case <-time.After(runtimeExitWait):
		}
	}
	_ = unix.Kill(-c.Process.Pid, unix.SIGKILL)
	t := time.NewTimer(killTimeout)
	defer t.Stop()
	select {
	case err := <-waited:
		return err
	case <-t.C:
		_ = c.Process.Kill()
		return <-waited
	}
}

// drain waits for the output copiers, and after drainTimeout closes their
// sources so that descendants holding the pipes open cannot hold us.
func drain(copiers *sync.WaitGroup, sources []*os.File) {
	ch := make(chan struct{})
	go func() {
		copiers.Wait()
		close(ch)
	}()
	t := time.NewTimer(drainTimeout)
	defer t.Stop()
	select {
	case <-ch:
		return
	case <-t.C:
	}
	for _, f := range sources {
		if f != nil {
			f.Close()
		}
	}
	<-ch
}

func readPid(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}

// exitResult turns the runtime's exit into the session's result. The
// runtime exits with the command's status; when it failed itself, its
// JSON log holds the error: a command that is missing or not executable
// becomes exit code 127 or 126 as a shell would give, anything else an
// error.
func exitResult(id string, waitErr error, logFile string) error {
	if waitErr == nil {
		return nil
	}
	var ee *exec.ExitError
	if !errors.As(waitErr, &ee) {
		return fmt.Errorf("exec in %s: %w", id, waitErr)
	}
	code := ee.ExitCode()
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	if msg := runtimeError(logFile); msg != "" {
		switch {
		case !strings.Contains(msg, `exec: "`):
		case strings.Contains(msg, "executable file not found"), strings.Contains(msg, "no such file or directory"):
			return utilexec.CodeExitError{Err: errors.New(msg), Code: 127}
		case strings.Contains(msg, "permission denied"), strings.Contains(msg, "exec format error"),
			strings.Contains(msg, "is a directory"):
			return utilexec.CodeExitError{Err: errors.New(msg), Code: 126}
		}
		if strings.Contains(msg, "stopped") || strings.Contains(msg, "not running") {
			return fmt.Errorf("exec in %s: %s: %w", id, msg, errdefs.ErrFailedPrecondition)
		}
		return fmt.Errorf("exec in %s: %s", id, msg)
	}
	return utilexec.CodeExitError{Err: fmt.Errorf("command exited with code %d", code), Code: code}
}

// runtimeError is the last error the runtime logged, "" if none.
func runtimeError(logFile string) string {
	f, err := os.Open(logFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		var e struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && (e.Level == "error" || e.Level == "fatal") {
			last = e.Msg
		}
	}
	return last
}
