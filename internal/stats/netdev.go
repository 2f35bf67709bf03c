package stats

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultInterface is the interface CNI plugins create in a pod; the CRI
// reports it apart from the others.
const DefaultInterface = "eth0"

// Interface holds the counters of one network interface.
type Interface struct {
	Name                string
	RxBytes, RxPackets  uint64
	RxErrors, RxDropped uint64
	TxBytes, TxPackets  uint64
	TxErrors, TxDropped uint64
}

// readNetNS reads /proc/net/dev as seen from the network namespace
// pinned at nsPath. It runs on a locked thread of its own that enters
// the namespace and leaves it again; if leaving fails, the thread stays
// locked so that the runtime discards it with the goroutine.
func readNetNS(nsPath string) ([]Interface, error) {
	type result struct {
		ifs []Interface
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		ifs, err, restored := readInNS(nsPath)
		if restored {
			runtime.UnlockOSThread()
		}
		ch <- result{ifs, err}
	}()
	r := <-ch
	return r.ifs, r.err
}

// readInNS does the work of readNetNS on the locked thread. restored is
// false only when the thread could not return to its own namespace.
func readInNS(nsPath string) (ifs []Interface, err error, restored bool) {
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("open own network namespace: %w", err), true
	}
	defer self.Close()
	target, err := os.Open(nsPath)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", nsPath, err), true
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("enter network namespace %s: %w", nsPath, err), true
	}
	// /proc/net follows the thread group leader; thread-self follows
	// this thread, which is the one that moved.
	b, rerr := os.ReadFile("/proc/thread-self/net/dev")
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("leave network namespace %s: %w", nsPath, err), false
	}
	if rerr != nil {
		return nil, fmt.Errorf("read /proc/net/dev in %s: %w", nsPath, rerr), true
	}
	ifs, err = parseNetDev(b)
	return ifs, err, true
}

// parseNetDev parses /proc/net/dev: two header lines, then
// "name: rx(bytes packets errs drop fifo frame compressed multicast)
// tx(bytes packets errs drop fifo colls carrier compressed)".
func parseNetDev(b []byte) ([]Interface, error) {
	var out []Interface
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.Contains(name, "|") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 16 {
			return nil, fmt.Errorf("parse /proc/net/dev: short line %q", sc.Text())
		}
		var n [16]uint64
		for i := range n {
			v, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("parse /proc/net/dev: %q: %w", sc.Text(), err)
			}
			n[i] = v
		}
		out = append(out, Interface{
			Name:    strings.TrimSpace(name),
			RxBytes: n[0], RxPackets: n[1], RxErrors: n[2], RxDropped: n[3],
			TxBytes: n[8], TxPackets: n[9], TxErrors: n[10], TxDropped: n[11],
		})
	}
	return out, sc.Err()
}
