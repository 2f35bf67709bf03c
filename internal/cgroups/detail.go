package cgroups

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// userHZ is the unit of cpuacct.stat (USER_HZ, 100 on every Linux ABI).
const userHZ = 100

// Detail is what a cgroup says beyond Usage: the figures cAdvisor
// exports per container (CPU split and throttling, memory breakdown,
// limits in force, block I/O, OOM kills) and the processes in it. It is
// read on demand, for metrics, never by the periodic sampler. Fields the
// host cannot measure stay zero; CPUQuota is -1 without a quota.
type Detail struct {
	CPUUserNanos, CPUSystemNanos         uint64
	CFSPeriods, CFSThrottledPeriods      uint64
	CFSThrottledNanos                    uint64
	CPUPeriod, CPUShares                 uint64
	CPUQuota                             int64
	Cache, MappedFile, KernelUsage       uint64
	MaxUsage, Failcnt, MemoryReservation uint64
	OOMKills                             uint64
	PidsMax                              uint64 // 0: no limit
	IO                                   []DeviceIO
	Procs                                []int
}

// DeviceIO is the block I/O of a cgroup on one device.
type DeviceIO struct {
	Major, Minor          uint64
	ReadBytes, WriteBytes uint64
	Reads, Writes         uint64
}

// ReadDetail reads the detail of the v1 cgroup rel.
func (v v1Reader) ReadDetail(rel string) (Detail, error) {
	d := Detail{CPUQuota: -1}
	if v.cpuacct != "" {
		if st, err := readKV(filepath.Join(v.cpuacct, rel, "cpuacct.stat")); err == nil {
			d.CPUUserNanos = st["user"] * 1e9 / userHZ
			d.CPUSystemNanos = st["system"] * 1e9 / userHZ
		} else if errors.Is(err, fs.ErrNotExist) {
			return d, ErrVanished
		}
	}
	if v.cpu != "" {
		dir := filepath.Join(v.cpu, rel)
		if st, err := readKV(filepath.Join(dir, "cpu.stat")); err == nil {
			d.CFSPeriods, d.CFSThrottledPeriods, d.CFSThrottledNanos = st["nr_periods"], st["nr_throttled"], st["throttled_time"]
		}
		d.CPUPeriod, _ = readUint(filepath.Join(dir, "cpu.cfs_period_us"))
		d.CPUShares, _ = readUint(filepath.Join(dir, "cpu.shares"))
		if q, err := readInt(filepath.Join(dir, "cpu.cfs_quota_us")); err == nil && q > 0 {
			d.CPUQuota = q
		}
	}
	if v.memory != "" {
		dir := filepath.Join(v.memory, rel)
		if st, err := readKV(filepath.Join(dir, "memory.stat")); err == nil {
			d.Cache, d.MappedFile = st["total_cache"], st["total_mapped_file"]
		}
		d.KernelUsage, _ = readUint(filepath.Join(dir, "memory.kmem.usage_in_bytes"))
		d.MaxUsage, _ = readUint(filepath.Join(dir, "memory.max_usage_in_bytes"))
		d.Failcnt, _ = readUint(filepath.Join(dir, "memory.failcnt"))
		if r, err := readUint(filepath.Join(dir, "memory.soft_limit_in_bytes")); err == nil && r < unlimited {
			d.MemoryReservation = r
		}
		if oc, err := readKV(filepath.Join(dir, "memory.oom_control")); err == nil {
			d.OOMKills = oc["oom_kill"]
		}
	}
	if v.pids != "" {
		d.PidsMax, _ = readMax(filepath.Join(v.pids, rel, "pids.max"))
	}
	if v.blkio != "" {
		dir := filepath.Join(v.blkio, rel)
		d.IO = v1BlkIO(filepath.Join(dir, "blkio.throttle.io_service_bytes_recursive"), filepath.Join(dir, "blkio.throttle.io_serviced_recursive"))
	}
	for _, h := range []string{v.pids, v.memory, v.cpuacct} {
		if h == "" {
			continue
		}
		if procs, err := readProcs(filepath.Join(h, rel, "cgroup.procs")); err == nil {
			d.Procs = procs
			break
		}
	}
	return d, nil
}

// v1BlkIO merges blkio's byte and operation counters per device
// ("8:0 Read 4096" lines).
func v1BlkIO(bytesFile, opsFile string) []DeviceIO {
	devs := map[[2]uint64]*DeviceIO{}
	var order [][2]uint64
	add := func(file string, set func(d *DeviceIO, op string, n uint64)) {
		data, err := os.ReadFile(file)
		if err != nil {
			return
		}
		for line := range strings.SplitSeq(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) != 3 {
				continue
			}
			majMin, ok := parseMajMin(f[0])
			n, err := strconv.ParseUint(f[2], 10, 64)
			if !ok || err != nil {
				continue
			}
			d := devs[majMin]
			if d == nil {
				d = &DeviceIO{Major: majMin[0], Minor: majMin[1]}
				devs[majMin] = d
				order = append(order, majMin)
			}
			set(d, f[1], n)
		}
	}
	add(bytesFile, func(d *DeviceIO, op string, n uint64) {
		switch op {
		case "Read":
			d.ReadBytes = n
		case "Write":
			d.WriteBytes = n
		}
	})
	add(opsFile, func(d *DeviceIO, op string, n uint64) {
		switch op {
		case "Read":
			d.Reads = n
		case "Write":
			d.Writes = n
		}
	})
	out := make([]DeviceIO, 0, len(order))
	for _, k := range order {
		out = append(out, *devs[k])
	}
	return out
}

// ReadDetail reads the detail of the v2 cgroup rel.
func (v v2Reader) ReadDetail(rel string) (Detail, error) {
	d := Detail{CPUQuota: -1}
	dir := filepath.Join(v.root, rel)
	st, err := readKV(filepath.Join(dir, "cpu.stat"))
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(dir); serr != nil {
			return d, ErrVanished
		}
	}
	d.CPUUserNanos, d.CPUSystemNanos = st["user_usec"]*1000, st["system_usec"]*1000
	d.CFSPeriods, d.CFSThrottledPeriods, d.CFSThrottledNanos = st["nr_periods"], st["nr_throttled"], st["throttled_usec"]*1000
	if b, err := os.ReadFile(filepath.Join(dir, "cpu.max")); err == nil {
		quota, period, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
		d.CPUPeriod, _ = strconv.ParseUint(period, 10, 64)
		if q, err := strconv.ParseInt(quota, 10, 64); err == nil {
			d.CPUQuota = q
		}
	}
	if w, err := readUint(filepath.Join(dir, "cpu.weight")); err == nil && w > 0 {
		d.CPUShares = weightToShares(w)
	}
	if ms, err := readKV(filepath.Join(dir, "memory.stat")); err == nil {
		d.Cache, d.MappedFile, d.KernelUsage = ms["file"], ms["file_mapped"], ms["kernel"]
	}
	d.MaxUsage, _ = readUint(filepath.Join(dir, "memory.peak"))
	d.MemoryReservation, _ = readMax(filepath.Join(dir, "memory.low"))
	if ev, err := readKV(filepath.Join(dir, "memory.events")); err == nil {
		d.Failcnt, d.OOMKills = ev["max"], ev["oom_kill"]
	}
	d.PidsMax, _ = readMax(filepath.Join(dir, "pids.max"))
	d.IO = v2IO(filepath.Join(dir, "io.stat"))
	d.Procs, _ = readProcs(filepath.Join(dir, "cgroup.procs"))
	return d, nil
}

// v2IO reads io.stat ("8:0 rbytes=1 wbytes=2 rios=3 wios=4 ...").
func v2IO(file string) []DeviceIO {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	var out []DeviceIO
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		majMin, ok := parseMajMin(f[0])
		if !ok {
			continue
		}
		d := DeviceIO{Major: majMin[0], Minor: majMin[1]}
		for _, kv := range f[1:] {
			k, val, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseUint(val, 10, 64)
			switch k {
			case "rbytes":
				d.ReadBytes = n
			case "wbytes":
				d.WriteBytes = n
			case "rios":
				d.Reads = n
			case "wios":
				d.Writes = n
			}
		}
		out = append(out, d)
	}
	return out
}

// weightToShares maps cpu.weight [1, 10000] back onto cpu.shares
// [2, 262144], the inverse of the conversion runc and the kubelet use.
func weightToShares(w uint64) uint64 {
	return 2 + (w-1)*262142/9999
}

func parseMajMin(s string) ([2]uint64, bool) {
	maj, min, ok := strings.Cut(s, ":")
	if !ok {
		return [2]uint64{}, false
	}
	a, err1 := strconv.ParseUint(maj, 10, 64)
	b, err2 := strconv.ParseUint(min, 10, 64)
	return [2]uint64{a, b}, err1 == nil && err2 == nil
}

func readInt(p string) (int64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
}

// readProcs reads the process ids of a cgroup.procs file.
func readProcs(p string) ([]int, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if n, err := strconv.Atoi(strings.TrimSpace(sc.Text())); err == nil {
			out = append(out, n)
		}
	}
	return out, sc.Err()
}
