// Package recovery is what berthd does at start, before it serves: it
// tells a plain restart from a crash and from a node reboot (markers in
// the state and run dirs), checks containers/storage after a crash,
// settles the pods the pod manager loaded, and after a crash sweeps what
// belongs to berth but to no record. The managers own their records and
// their clean-up steps; this package only decides what runs, in which
// order, and logs what was found.
package recovery

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/berth-cri/berth/internal/store"
)

// Marker files.
const (
	// bootMarker, in the run dir (a tmpfs, /run/berth), holds the kernel
	// boot id of the boot berthd last started in. Missing (the tmpfs was
	// emptied) or different means the node rebooted.
	bootMarker = "berth.boot"
	// stateMarker, in the state dir, says berthd ran here before: without
	// it there is nothing to recover (first start).
	stateMarker = "berth.state"
	// cleanMarker, in the state dir, is written by a clean shutdown and
	// removed at start: missing at start means berthd crashed.
	cleanMarker = "clean-shutdown"
)

// Start is what the markers say about the previous run.
type Start struct {
	StateDir, RunDir string
	// Fresh: berthd never ran with this state dir.
	Fresh bool
	// Rebooted: the node rebooted since berthd last started.
	Rebooted bool
	// Unclean: berthd did not shut down cleanly (it was killed, or
	// crashed, or the node lost power).
	Unclean bool
	bootID  []byte
}

// Inspect reads the markers and removes the clean-shutdown one, so that
// a crash from now on (even during recovery) is seen as unclean.
func Inspect(stateDir, runDir string) (*Start, error) {
	s := &Start{StateDir: stateDir, RunDir: runDir}
	id, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return nil, fmt.Errorf("read boot id: %w", err)
	}
	s.bootID = bytes.TrimSpace(id)
	if _, err := os.Stat(filepath.Join(stateDir, stateMarker)); errors.Is(err, fs.ErrNotExist) {
		s.Fresh = true
	}
	prevBoot, err := os.ReadFile(filepath.Join(runDir, bootMarker))
	s.Rebooted = !s.Fresh && (err != nil || !bytes.Equal(bytes.TrimSpace(prevBoot), s.bootID))
	_, err = os.Stat(filepath.Join(stateDir, cleanMarker))
	s.Unclean = !s.Fresh && err != nil
	if err := os.Remove(filepath.Join(stateDir, cleanMarker)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("remove clean-shutdown marker: %w", err)
	}
	if s.Fresh {
		if err := store.WriteFileAtomic(filepath.Join(stateDir, stateMarker), []byte("1\n"), 0o600); err != nil {
			return nil, fmt.Errorf("write state marker: %w", err)
		}
	}
	return s, nil
}

// Done records that recovery finished in this boot.
func (s *Start) Done() error {
	if err := store.WriteFileAtomic(filepath.Join(s.RunDir, bootMarker), append(s.bootID, '\n'), 0o600); err != nil {
		return fmt.Errorf("write boot marker: %w", err)
	}
	return nil
}

// MarkClean records a clean shutdown; call it last, after storage is
// closed.
func MarkClean(stateDir string) error {
	if err := store.WriteFileAtomic(filepath.Join(stateDir, cleanMarker), []byte("1\n"), 0o600); err != nil {
		return fmt.Errorf("write clean-shutdown marker: %w", err)
	}
	return nil
}
