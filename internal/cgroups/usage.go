package cgroups

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// unlimited is the smallest value read as "no limit" in v1 files, which
// print PAGE_COUNTER_MAX rounded to pages (9223372036854771712) instead.
const unlimited = uint64(1) << 62

// Usage is one sample of a cgroup: cumulative CPU time, memory, swap and
// process count. Fields the host cannot measure stay zero.
type Usage struct {
	Time     time.Time
	CPUNanos uint64
	// MemoryUsage is usage_in_bytes (v1) or memory.current (v2);
	// WorkingSet is that minus inactive file pages, as the kubelet
	// computes it.
	MemoryUsage, WorkingSet, RSS uint64
	PageFaults, MajorPageFaults  uint64
	// MemoryLimit and SwapLimit are 0 when unlimited.
	MemoryLimit uint64
	SwapUsage   uint64
	SwapLimit   uint64
	HasSwap     bool
	Pids        uint64
}

// ErrVanished reports a cgroup whose directory is gone: the container
// exited and its cgroup was removed between listing and reading.
var ErrVanished = errors.New("cgroup does not exist")

// CPUSample is one reading of a cgroup's cumulative CPU time.
type CPUSample struct {
	Time  time.Time
	Nanos uint64
}

// Reader reads one cgroup by its path relative to the hierarchy
// roots ("/kubepods/pod1/berth-ID"): read takes everything, readCPU
// only the CPU counter (one small file), for answers between full
// samples.
type Reader interface {
	Read(rel string) (Usage, error)
	ReadCPU(rel string) (CPUSample, error)
	// ReadDetail reads what metrics report beyond Usage (see Detail).
	ReadDetail(rel string) (Detail, error)
}

// ProbeReader picks the reader for this host: v2 when /sys/fs/cgroup is
// the unified hierarchy, v1 otherwise (including hybrid hosts, whose v2
// tree carries no controllers).
func ProbeReader() (Reader, error) {
	if IsUnified(Root) {
		return v2Reader{root: Root}, nil
	}
	mounts, err := Mounts()
	if err != nil {
		return nil, err
	}
	return v1FromMounts(mounts)
}

// NewV2Reader reads the unified hierarchy mounted at root (a hybrid host
// mounts one beside v1's, without controllers).
func NewV2Reader(root string) Reader { return v2Reader{root: root} }

// v1Reader reads the cpuacct, memory and pids hierarchies of cgroup v1,
// and for the detail also cpu and blkio.
type v1Reader struct {
	cpuacct, memory, pids string
	cpu, blkio            string
}

// v1FromMounts finds the hierarchy of each v1 controller berth reads;
// co-mounted controllers ("cpu,cpuacct") share one.
func v1FromMounts(mounts []Mount) (v1Reader, error) {
	v := v1Reader{cpuacct: ControllerDir(mounts, "cpuacct"), memory: ControllerDir(mounts, "memory"), pids: ControllerDir(mounts, "pids"),
		cpu: ControllerDir(mounts, "cpu"), blkio: ControllerDir(mounts, "blkio")}
	if v.cpuacct == "" && v.memory == "" {
		return v, errors.New("no cgroup v1 cpuacct or memory hierarchy is mounted")
	}
	return v, nil
}

func (v v1Reader) Read(rel string) (Usage, error) {
	u := Usage{Time: time.Now()}
	present := false
	if v.cpuacct != "" {
		dir := filepath.Join(v.cpuacct, rel)
		n, err := readUint(filepath.Join(dir, "cpuacct.usage"))
		switch {
		case err == nil:
			u.CPUNanos, present = n, true
		case !errors.Is(err, fs.ErrNotExist):
			return u, err
		}
	}
	if v.memory != "" {
		dir := filepath.Join(v.memory, rel)
		stat, err := readKV(filepath.Join(dir, "memory.stat"))
		switch {
		case err == nil:
			present = true
			u.MemoryUsage, _ = readUint(filepath.Join(dir, "memory.usage_in_bytes"))
			u.RSS = stat["total_rss"]
			u.PageFaults, u.MajorPageFaults = stat["total_pgfault"], stat["total_pgmajfault"]
			u.WorkingSet = workingSet(u.MemoryUsage, stat["total_inactive_file"])
			if l, err := readUint(filepath.Join(dir, "memory.limit_in_bytes")); err == nil && l < unlimited {
				u.MemoryLimit = l
			}
			if sw, err := readUint(filepath.Join(dir, "memory.memsw.usage_in_bytes")); err == nil {
				u.HasSwap = true
				if sw > u.MemoryUsage {
					u.SwapUsage = sw - u.MemoryUsage
				}
				if l, err := readUint(filepath.Join(dir, "memory.memsw.limit_in_bytes")); err == nil && l < unlimited && l > u.MemoryLimit {
					u.SwapLimit = l - u.MemoryLimit
				}
			}
		case !errors.Is(err, fs.ErrNotExist):
			return u, err
		}
	}
	if !present {
		return u, ErrVanished
	}
	if v.pids != "" {
		u.Pids, _ = readUint(filepath.Join(v.pids, rel, "pids.current"))
	}
	return u, nil
}

func (v v1Reader) ReadCPU(rel string) (CPUSample, error) {
	s := CPUSample{Time: time.Now()}
	if v.cpuacct == "" {
		return s, errors.New("no cgroup v1 cpuacct hierarchy")
	}
	n, err := readUint(filepath.Join(v.cpuacct, rel, "cpuacct.usage"))
	if errors.Is(err, fs.ErrNotExist) {
		return s, ErrVanished
	}
	s.Nanos = n
	return s, err
}

// v2Reader reads one unified hierarchy mounted at root.
type v2Reader struct{ root string }

func (v v2Reader) Read(rel string) (Usage, error) {
	u := Usage{Time: time.Now()}
	dir := filepath.Join(v.root, rel)
	cpu, err := readKV(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if _, serr := os.Stat(dir); serr != nil {
				return u, ErrVanished
			}
		} else {
			return u, err
		}
	}
	u.CPUNanos = cpu["usage_usec"] * 1000
	// The memory and pids files exist only where those controllers are
	// enabled; a cgroup without them reports zeros.
	if stat, err := readKV(filepath.Join(dir, "memory.stat")); err == nil {
		u.MemoryUsage, _ = readUint(filepath.Join(dir, "memory.current"))
		u.RSS = stat["anon"]
		u.PageFaults, u.MajorPageFaults = stat["pgfault"], stat["pgmajfault"]
		u.WorkingSet = workingSet(u.MemoryUsage, stat["inactive_file"])
		u.MemoryLimit, _ = readMax(filepath.Join(dir, "memory.max"))
		if sw, err := readUint(filepath.Join(dir, "memory.swap.current")); err == nil {
			u.HasSwap, u.SwapUsage = true, sw
			u.SwapLimit, _ = readMax(filepath.Join(dir, "memory.swap.max"))
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return u, err
	}
	u.Pids, _ = readUint(filepath.Join(dir, "pids.current"))
	return u, nil
}

func (v v2Reader) ReadCPU(rel string) (CPUSample, error) {
	s := CPUSample{Time: time.Now()}
	cpu, err := readKV(filepath.Join(v.root, rel, "cpu.stat"))
	if errors.Is(err, fs.ErrNotExist) {
		return s, ErrVanished
	}
	s.Nanos = cpu["usage_usec"] * 1000
	return s, err
}

// workingSet is usage minus inactive file pages, never below zero: the
// kubelet's (and cAdvisor's) definition.
func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile >= usage {
		return 0
	}
	return usage - inactiveFile
}

func readUint(p string) (uint64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", p, err)
	}
	return n, nil
}

// readMax reads a v2 limit file; "max" is 0 (unlimited).
func readMax(p string) (uint64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	s := string(bytes.TrimSpace(b))
	if s == "max" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", p, err)
	}
	return n, nil
}

// readKV reads a flat keyed file ("key value" per line) such as
// memory.stat or cpu.stat.
func readKV(p string) (map[string]uint64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	m := make(map[string]uint64, 64)
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		k, v, ok := bytes.Cut(line, []byte{' '})
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(string(v), 10, 64); err == nil {
			m[string(k)] = n
		}
	}
	return m, nil
}

// PathDir turns an OCI cgroupsPath or a pod's cgroup parent into the
// path below the hierarchy roots. cgroupfs paths are used as they are;
// the systemd forms "parent.slice:prefix:name" and "name.slice" are
// expanded the way runc's systemd driver lays them out.
func PathDir(p string) string {
	if p == "" {
		return ""
	}
	if parts := strings.Split(p, ":"); len(parts) == 3 {
		return filepath.Join(expandSlice(parts[0]), parts[1]+"-"+parts[2]+".scope")
	}
	if strings.HasSuffix(p, ".slice") && !strings.Contains(p, "/") {
		return expandSlice(p)
	}
	return filepath.Clean("/" + p)
}

// expandSlice maps "a-b-c.slice" to "/a.slice/a-b.slice/a-b-c.slice";
// "-.slice" and "" are the root.
func expandSlice(slice string) string {
	stem := strings.TrimSuffix(slice, ".slice")
	if stem == "" || stem == "-" {
		return "/"
	}
	var b strings.Builder
	prefix := ""
	for _, c := range strings.Split(stem, "-") {
		if prefix != "" {
			prefix += "-"
		}
		prefix += c
		b.WriteString("/" + prefix + ".slice")
	}
	return b.String()
}
