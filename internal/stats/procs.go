package stats

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procCounts is what cAdvisor counts of a container's processes: threads,
// open files and sockets over every process of its cgroup, and the soft
// limits of its first (root) process.
type procCounts struct {
	threads, fds, sockets uint64
	// openFiles is the root process's soft RLIMIT_NOFILE (-1: none), the
	// one ulimit cAdvisor reports ("max_open_files"); hasOpenFiles says
	// whether it was read.
	openFiles    int64
	hasOpenFiles bool
}

// countProcs reads /proc (under procRoot) for the processes pids. A
// process that exits meanwhile is skipped.
func countProcs(procRoot string, pids []int) procCounts {
	var pc procCounts
	for i, pid := range pids {
		dir := filepath.Join(procRoot, strconv.Itoa(pid))
		if tasks, err := os.ReadDir(filepath.Join(dir, "task")); err == nil {
			pc.threads += uint64(len(tasks))
		}
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err == nil {
			pc.fds += uint64(len(fds))
			for _, fd := range fds {
				if l, err := os.Readlink(filepath.Join(dir, "fd", fd.Name())); err == nil && strings.HasPrefix(l, "socket:") {
					pc.sockets++
				}
			}
		}
		if i == 0 {
			pc.openFiles, pc.hasOpenFiles = readOpenFilesLimit(filepath.Join(dir, "limits"))
		}
	}
	return pc
}

// readOpenFilesLimit reads the soft "Max open files" limit of a
// /proc/PID/limits table ("Max open files  1024  4096  files").
func readOpenFilesLimit(file string) (int64, bool) {
	f, err := os.Open(file)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Max open files")
		fields := strings.Fields(rest)
		if !ok || len(fields) == 0 {
			continue
		}
		if fields[0] == "unlimited" {
			return -1, true
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		return n, err == nil
	}
	return 0, false
}

// blockDeviceName names a block device as cAdvisor's device label does
// ("/dev/sda"), from sysfs; "major:minor" when sysfs does not say.
func blockDeviceName(sysRoot string, major, minor uint64) string {
	id := strconv.FormatUint(major, 10) + ":" + strconv.FormatUint(minor, 10)
	data, err := os.ReadFile(filepath.Join(sysRoot, "dev/block", id, "uevent"))
	if err != nil {
		return id
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if name, ok := strings.CutPrefix(line, "DEVNAME="); ok {
			return "/dev/" + name
		}
	}
	return id
}
