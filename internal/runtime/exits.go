package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchExits runs the one fsnotify watcher on the exit directory. conmon
// writes <exit-dir>/<id> through GLib's g_file_set_contents: a temporary
// "<id>.XXXXXX" that is then renamed, so the name berth wants arrives as
// an IN_MOVED_TO, which fsnotify reports as Create. Temporary and other
// unknown names are skipped here (ids never contain a dot) or by the
// handler (ids it does not know). If the kernel queue overflows, the
// directory is rescanned so no exit is lost.
func (m *Monitor) watchExits() {
	defer close(m.watchDone)
	for {
		select {
		case ev, ok := <-m.watcher.Events:
			if !ok {
				return
			}
			if !ev.Has(fsnotify.Create) && !ev.Has(fsnotify.Rename) && !ev.Has(fsnotify.Write) {
				continue
			}
			name := filepath.Base(ev.Name)
			if !validExitName(name) {
				continue
			}
			if _, err := os.Lstat(ev.Name); err != nil {
				// A rename away (the temp name) or already handled.
				continue
			}
			m.deliver(name)
		case err, ok := <-m.watcher.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				m.cfg.Log.Warn("exit watcher overflowed; rescanning", "dir", m.cfg.ExitDir)
				m.Rescan()
				continue
			}
			m.cfg.Log.Error("exit watcher", "error", err)
		}
	}
}

// deliver routes the exit of id to its owner; the notification of an id
// nobody claimed (left from before a restart and settled from the
// persist dir, or of a process already forgotten) is cleared.
func (m *Monitor) deliver(id string) {
	if !m.router.route(Notice{ID: id}) {
		m.ClearExit(id)
	}
}

// Rescan delivers every exit file present now: the exits that happened
// while berthd was not watching, once the owners have claimed their ids.
func (m *Monitor) Rescan() {
	for _, id := range m.PendingExits() {
		m.deliver(id)
	}
}

// validExitName accepts the names berth gives containers: hex ids (and
// anything else without a dot or path separator, for other id schemes).
func validExitName(name string) bool {
	return name != "" && !strings.ContainsAny(name, "./") && len(name) <= 128
}

// PendingExits lists the exit files present now: the exits that happened
// while berthd was not watching. Recovery handles them before serving.
func (m *Monitor) PendingExits() []string {
	ents, err := os.ReadDir(m.cfg.ExitDir)
	if err != nil {
		return nil
	}
	var ids []string
	for _, e := range ents {
		if validExitName(e.Name()) && !e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	return ids
}

// ClearExit removes the exit-dir notification of id once handled; the
// persist-dir file stays as the record of the exit code.
func (m *Monitor) ClearExit(id string) {
	if !validExitName(id) {
		return
	}
	if err := os.Remove(filepath.Join(m.cfg.ExitDir, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		m.cfg.Log.Warn("remove exit file", "id", id, "error", err)
	}
}

// Exit is a container's exit as conmon recorded it.
type Exit struct {
	Code int32
	// At is the ctime of the exit file: conmon writes it right after the
	// container is reaped, so it is the finish time as CRI-O reports it.
	At        time.Time
	OOMKilled bool
}

// ReadExit reads <persistDir>/exit (a decimal status, no newline) and the
// oom marker. It returns an error wrapping os.ErrNotExist when conmon has
// not written it (still running, or conmon died).
func ReadExit(persistDir string) (*Exit, error) {
	p := filepath.Join(persistDir, ExitFile)
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	code, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 32)
	if err != nil {
		return nil, fmt.Errorf("exit file %s holds %q: %w", p, data, err)
	}
	e := &Exit{Code: int32(code), At: time.Now()}
	if st, err := os.Stat(p); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			e.At = time.Unix(sys.Ctim.Sec, sys.Ctim.Nsec)
		}
	}
	if _, err := os.Stat(filepath.Join(persistDir, OOMFile)); err == nil {
		e.OOMKilled = true
	}
	return e, nil
}
