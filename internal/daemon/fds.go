package daemon

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// closeInheritedOnExec marks every fd berthd inherited beyond stdio
// close-on-exec. Go sets that flag on the fds it opens itself, but not on
// those its parent left open (a lock held by a supervisor or a test
// harness, a socket of the shell that started it); without this they
// would pass on to every conmon, runc and CNI plugin berthd starts, and
// a plugin or conmon that outlives berthd would keep them open.
func closeInheritedOnExec() error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list inherited fds: %w", err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		// The fd of the directory listing is closed by now: EBADF.
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil && err != unix.EBADF {
			return fmt.Errorf("mark fd %d close-on-exec: %w", fd, err)
		}
	}
	return nil
}
