// Package monitor runs containers under conmon, the way CRI-O does, and
// watches them: it speaks conmon's protocol (sync and start socketpairs
// as fds 3/4, pid files, the k8s-file log, the exit and persist
// directories, the ctl FIFO), watches the exit directory with one
// fsnotify watcher, reaps what is reparented to berthd, and runs the
// short runtime calls (start, kill, delete, state, update, exec) itself
// (see Runtime).
//
// conmon daemonizes and calls setsid, so containers keep running and
// logging while berthd is stopped; everything needed to find them again
// (pids with start times, the persist dir) is returned to the caller to
// store.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Config is the node-wide part of running conmon.
type Config struct {
	// Conmon is the conmon binary.
	Conmon string
	// ExitDir receives conmon's <id> exit files.
	ExitDir string
	// AttachDir is conmon's --socket-dir-path: <AttachDir>/<id> links
	// to the bundle holding the attach socket.
	AttachDir string
	// LogLevel is conmon's own --log-level.
	LogLevel string
	Log      *slog.Logger
	// ChildSignals delivers the SIGCHLDs of a berthd that the daemon made
	// the child subreaper (process-wide settings are the daemon's); nil
	// reaps nothing, for tests.
	ChildSignals <-chan os.Signal
}

// Monitor is the node's conmon driver. It is safe for concurrent use.
type Monitor struct {
	cfg       Config
	watcher   *fsnotify.Watcher
	watchDone chan struct{}
	reaper    *reaper
	router    router
}

// New checks conmon, makes the directories and starts watching the exit
// directory and reaping.
func New(cfg Config) (*Monitor, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if err := unix.Access(cfg.Conmon, unix.X_OK); err != nil {
		return nil, fmt.Errorf("conmon %s is not executable: %w (%w)", cfg.Conmon, err, errdefs.ErrFailedPrecondition)
	}
	for _, d := range []string{cfg.ExitDir, cfg.AttachDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	w, err := fsnotify.NewBufferedWatcher(256)
	if err != nil {
		return nil, fmt.Errorf("exit watcher: %w", err)
	}
	if err := w.Add(cfg.ExitDir); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch %s: %w", cfg.ExitDir, err)
	}
	r, err := newReaper(cfg.Log, cfg.ChildSignals)
	if err != nil {
		w.Close()
		return nil, err
	}
	m := &Monitor{cfg: cfg, watcher: w, watchDone: make(chan struct{}), reaper: r, router: router{owners: map[string]*Owner{}, closed: make(chan struct{})}}
	go m.watchExits()
	return m, nil
}

// Close stops watching. Containers and their conmons keep running.
func (m *Monitor) Close() error {
	close(m.router.closed)
	err := m.watcher.Close()
	<-m.watchDone
	m.reaper.close()
	return err
}

// AttachSocket is where a container's attach socket is reached.
func (m *Monitor) AttachSocket(id string) string {
	return filepath.Join(m.cfg.AttachDir, id, "attach")
}

// RemoveAttachLink removes <AttachDir>/<id>; conmon removes it itself at
// exit, but not if it was killed.
func (m *Monitor) RemoveAttachLink(id string) {
	if validExitName(id) {
		_ = os.Remove(filepath.Join(m.cfg.AttachDir, id))
	}
}

// ReopenLog asks the conmon of the container in bundle to reopen its log
// file (ctl message type 2) and waits until the file at logPath has been
// recreated: conmon makes a new file through a temp name and a rename.
// The kubelet rotates logs by renaming the file and then calling this.
// If conmon exits meanwhile, the wait ends with an error.
func ReopenLog(ctx context.Context, bundle, logPath string, conmon Proc) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch log dir: %w", err)
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(logPath)); err != nil {
		return fmt.Errorf("watch %s: %w", filepath.Dir(logPath), err)
	}
	if err := writeCtl(bundle, "2 0 0\n"); err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	gone := make(chan struct{})
	go func() {
		if conmon.WaitExit(wctx) == nil {
			close(gone)
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for conmon to reopen %s: %w", logPath, ctx.Err())
		case <-gone:
			return fmt.Errorf("conmon exited before reopening %s: %w", logPath, errdefs.ErrFailedPrecondition)
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("log watcher closed")
			}
			if ev.Name == logPath && (ev.Has(fsnotify.Create) || ev.Has(fsnotify.Write)) {
				return nil
			}
		case err := <-w.Errors:
			return fmt.Errorf("watch %s: %w", logPath, err)
		}
	}
}

// writeCtl writes one message to the ctl FIFO. conmon holds the FIFO
// open for reading while it lives, so a non-blocking open fails with
// ENXIO exactly when conmon is gone.
func writeCtl(bundle, msg string) error {
	p := filepath.Join(bundle, CtlFIFO)
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENXIO) || errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("conmon is not running (ctl %s): %w", p, errdefs.ErrFailedPrecondition)
		}
		return fmt.Errorf("open ctl %s: %w", p, err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte(msg)); err != nil {
		return fmt.Errorf("write ctl %s: %w", p, err)
	}
	return nil
}
