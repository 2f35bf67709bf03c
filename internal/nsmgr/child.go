package nsmgr

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ChildMain is the helper's whole program, run by berthd when its first
// argument is ChildCommand. The process was cloned into the new
// namespaces already, so everything done here lands inside them and
// nowhere else. It returns the exit code.
func ChildMain() int {
	// One JSON value: in a user namespace stdin stays open after it.
	var spec childSpec
	if err := json.NewDecoder(io.LimitReader(os.Stdin, 1<<20)).Decode(&spec); err != nil {
		return fail(exitFailure, "decode request: %v", err)
	}
	if _, ok := spec.Targets[UTS]; ok && spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return fail(exitFailure, "set hostname: %v", err)
		}
	}
	if _, ok := spec.Targets[Net]; ok {
		if err := loopbackUp(); err != nil {
			return fail(exitFailure, "bring up lo: %v", err)
		}
	}
	for k, v := range spec.Sysctls {
		if err := writeSysctl(k, v); err != nil {
			return fail(exitBadSysctl, "sysctl %s: %v", k, err)
		}
	}
	if spec.ParentBinds {
		// berthd binds /proc/<pid>/ns/* now; this process must live
		// until it closes stdin.
		if _, err := os.Stdout.WriteString(readyLine); err != nil {
			return fail(exitFailure, "report ready: %v", err)
		}
		_, _ = io.Copy(io.Discard, os.Stdin)
		return 0
	}
	for kind, target := range spec.Targets {
		src := "/proc/self/ns/" + kind
		if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
			return fail(exitFailure, "bind %s on %s: %v", src, target, err)
		}
	}
	return 0
}

func fail(code int, format string, args ...any) int {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	return code
}

// writeSysctl sets key (dotted form, already validated to hold no path
// separators or "..") through /proc/sys of this process's namespaces.
func writeSysctl(key, value string) error {
	rel := strings.ReplaceAll(key, ".", "/")
	p := filepath.Join("/proc/sys", rel)
	if !strings.HasPrefix(p, "/proc/sys/") {
		return fmt.Errorf("key escapes /proc/sys")
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		if os.IsNotExist(err) {
			return fmt.Errorf("no such sysctl in this kernel")
		}
		return err
	}
	_, werr := f.WriteString(value)
	cerr := f.Close()
	if werr != nil {
		return werr
	}
	return cerr
}

// loopbackUp sets IFF_UP on lo, which a new network namespace starts
// without; doing it here saves a CNI loopback plugin exec per pod.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
