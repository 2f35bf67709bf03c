// Command berth-pause is the process that holds a pod's shared PID
// namespace: it runs as PID 1 there, reaps the orphans the pod's
// containers leave, and exits on SIGTERM or SIGINT (PID 1 has no default
// signal actions, so it must handle them itself). Build it static
// (CGO_ENABLED=0): berth runs it from a rootfs holding nothing else.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		reap()
	}
}

// reap collects every exited child; one SIGCHLD may stand for several.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
