package runtime

import (
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// reaper reaps what gets reparented to berthd, which the daemon makes
// the child subreaper of everything it starts: conmon's daemonized main process
// (its launcher exits at once), and a container's init if its conmon
// dies. The node's PID 1 may reap late or never, and a zombie conmon
// still answers kill(pid, 0), so berth does not leave that job to it.
//
// berthd's own direct children (runc, conmon's launcher, CNI plugins,
// helpers of other packages) are waited for by os/exec; stealing their
// exit status would break cmd.Wait. They are told apart by session:
// os/exec children stay in berthd's session, while everything that
// reaches berthd by reparenting comes from conmon, which calls setsid.
// So a zombie child is reaped here only if its pid was registered with
// adopt or it sits in another session. A package that starts a child
// with Setsid and waits for it itself would conflict with this rule.
type reaper struct {
	log     *slog.Logger
	session int
	// sigs are berthd's SIGCHLDs; kicks ask for a sweep after adopt.
	sigs  <-chan os.Signal
	kicks chan struct{}
	done  chan struct{}

	mu      sync.Mutex
	adopted map[int]func(unix.WaitStatus)
}

func newReaper(log *slog.Logger, sigs <-chan os.Signal) (*reaper, error) {
	sid, err := unix.Getsid(0)
	if err != nil {
		return nil, os.NewSyscallError("getsid", err)
	}
	r := &reaper{
		log:     log,
		session: sid,
		sigs:    sigs,
		kicks:   make(chan struct{}, 1),
		done:    make(chan struct{}),
		adopted: map[int]func(unix.WaitStatus){},
	}
	go r.loop()
	return r, nil
}

// adopt asks to be told when pid, once reparented to berthd, exits; the
// callback gets its wait status. Only pids certain to become berthd's
// children (conmon's daemonized main process) are registered, so that a
// registration can never match a recycled pid.
func (r *reaper) adopt(pid int, onExit func(unix.WaitStatus)) {
	r.mu.Lock()
	r.adopted[pid] = onExit
	r.mu.Unlock()
	// It may have exited before the registration.
	r.kick()
}

func (r *reaper) kick() {
	select {
	case r.kicks <- struct{}{}:
	default:
	}
}

func (r *reaper) close() { close(r.done) }

func (r *reaper) loop() {
	for {
		select {
		case <-r.done:
			return
		case <-r.sigs:
			r.sweep()
		case <-r.kicks:
			r.sweep()
		}
	}
}

// sweep reaps every exited adopted pid and every zombie child that is not
// in berthd's session.
func (r *reaper) sweep() {
	r.mu.Lock()
	pids := make([]int, 0, len(r.adopted))
	for pid := range r.adopted {
		pids = append(pids, pid)
	}
	r.mu.Unlock()
	for _, pid := range pids {
		r.reap(pid)
	}
	for _, pid := range reparented() {
		st, err := readStat(pid)
		if err != nil || st.state != 'Z' || st.session == r.session {
			continue
		}
		r.reap(pid)
	}
}

func (r *reaper) reap(pid int) {
	var ws unix.WaitStatus
	got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
	if err != nil {
		if errors.Is(err, unix.ECHILD) {
			// Someone else waited for it (or it was never ours): stop
			// retrying it on every SIGCHLD.
			r.mu.Lock()
			delete(r.adopted, pid)
			r.mu.Unlock()
		} else {
			r.log.Debug("reap", "pid", pid, "error", err)
		}
		return
	}
	if got != pid {
		return
	}
	r.mu.Lock()
	cb := r.adopted[pid]
	delete(r.adopted, pid)
	r.mu.Unlock()
	r.log.Debug("reaped", "pid", pid, "status", exitStatus(ws))
	if cb != nil {
		cb(ws)
	}
}

// reparented lists the children of berthd's main thread only. The
// kernel hands an orphan to a subreaper's first live thread, the thread
// group leader, which lives as long as berthd; os/exec children, forked
// from any thread, are in the other threads' lists and are not ours to
// reap. One file instead of one per thread matters: this runs on every
// SIGCHLD, and globbing and reading every thread's list was berthd's
// largest CPU cost in a benchmark run.
func reparented() []int {
	pid := strconv.Itoa(os.Getpid())
	data, err := os.ReadFile("/proc/" + pid + "/task/" + pid + "/children")
	if err != nil {
		return nil
	}
	return pidList(data, nil)
}

// exitStatus turns a wait status into a shell-style exit code.
func exitStatus(ws unix.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return -1
}

// BecomeSubreaper makes the calling process the child subreaper of
// everything it starts and returns its SIGCHLDs, for Config.ChildSignals.
// It changes process-wide state: the daemon calls it once.
func BecomeSubreaper() (<-chan os.Signal, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, os.NewSyscallError("prctl(PR_SET_CHILD_SUBREAPER)", err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	return sigs, nil
}
