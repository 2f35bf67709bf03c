package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// lockRunDir takes an exclusive lock on <runDir>/berthd.lock so that a
// second berthd on the same state refuses to start before it touches any
// record, namespace or container (recovery would otherwise fight the
// running daemon). The kernel drops the lock when the process dies, so a
// killed daemon never leaves it stale.
func lockRunDir(runDir string) (*os.File, error) {
	path := filepath.Join(runDir, "berthd.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	// A child that a killed berthd was starting (forked, not yet
	// exec'd) briefly holds the lock too; a running daemon holds it for
	// good. Waiting a little tells the two apart.
	deadline := time.Now().Add(lockWait)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if err != unix.EWOULDBLOCK {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("another berthd is running on run dir %s (%s is locked): its socket is in use", runDir, path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lockWait is how long a held run-dir lock may take to be released.
const lockWait = 2 * time.Second
