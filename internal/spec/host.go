package spec

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/berth-cri/berth/internal/cgroups"
	"golang.org/x/sys/unix"
)

// Host is what the node can do. Generate adapts a spec to it instead of
// handing runc settings it would fail on: a real node lacks controllers,
// capabilities or LSMs that the kubelet still asks for. ProbeHost fills
// it from the running system; tests build one by hand.
type Host struct {
	// Bounding is the capability bounding set of berthd, which conmon and
	// runc inherit: no container can get a capability outside it.
	Bounding map[string]bool
	// Controllers are the cgroup controllers mounted (v1) or enabled at
	// the root (v2), e.g. "cpu", "memory", "hugetlb".
	Controllers map[string]bool
	// CgroupV2 is true on a unified-only host.
	CgroupV2 bool
	// SwapAccounting is true when memory+swap limits can be set
	// (memory.memsw.* on v1, memory.swap.max on v2).
	SwapAccounting bool
	// AppArmor is true when the kernel has AppArmor enabled.
	AppArmor bool
	// OOMScoreAdj is berthd's own oom_score_adj; without CAP_SYS_RESOURCE
	// no child may go below it.
	OOMScoreAdj int
	// Devices lists the host's device nodes; privileged containers get
	// them all. Nil means "not probed": privileged then gets none listed.
	Devices []Device
	// OnlineCPUs and OnlineMems are the host's CPUs and memory nodes as
	// kernel lists ("0-3"); "" when unknown.
	OnlineCPUs, OnlineMems string
}

// Device is one host device node.
type Device struct {
	Path         string
	Type         string // "c" or "b"
	Major, Minor int64
	FileMode     os.FileMode
	UID, GID     uint32
}

// HasCap reports whether capability c ("CAP_X") is in the bounding set.
// A Host with no probed bounding set allows every capability.
func (h *Host) HasCap(c string) bool {
	if h.Bounding == nil {
		return true
	}
	return h.Bounding[c]
}

// HasController reports whether cgroup controller c is usable. A Host
// with no probed controllers has them all.
func (h *Host) HasController(c string) bool {
	if h.Controllers == nil {
		return true
	}
	return h.Controllers[c]
}

// Limits lists, in words, what this host cannot give containers and
// berth will therefore adapt: logged once at start so an operator sees
// it before the first pod asks.
func (h *Host) Limits() []string {
	var out []string
	if !h.HasController("hugetlb") {
		out = append(out, "no hugetlb cgroup controller: hugepage limits are ignored")
	}
	if !h.HasCap("CAP_SYS_RESOURCE") {
		out = append(out, fmt.Sprintf("no CAP_SYS_RESOURCE: oom_score_adj below %d is raised to it", h.OOMScoreAdj))
	}
	if n := len(allCaps(h)); n < len(capNames) {
		out = append(out, fmt.Sprintf("capability bounding set holds %d of %d capabilities: privileged containers get only those", n, len(capNames)))
	}
	if !h.SwapAccounting {
		out = append(out, "no swap accounting: memory+swap limits are ignored")
	}
	return out
}

// ProbeHost reads the running system. It is cheap enough to call once at
// start; the result does not change while berthd runs.
func ProbeHost() (*Host, error) {
	h := &Host{}
	var err error
	if h.Bounding, err = boundingSet("/proc/self/status"); err != nil {
		return nil, err
	}
	h.CgroupV2 = cgroups.IsUnified(cgroups.Root)
	if h.CgroupV2 {
		h.Controllers = cgroup2Controllers("/sys/fs/cgroup/cgroup.controllers")
		_, serr := os.Stat("/sys/fs/cgroup/memory.swap.max")
		if serr != nil {
			// The root has no memory.swap.max; look one level down.
			m, _ := filepath.Glob("/sys/fs/cgroup/*/memory.swap.max")
			serr = nil
			if len(m) == 0 {
				serr = os.ErrNotExist
			}
		}
		h.SwapAccounting = serr == nil
	} else {
		h.Controllers = cgroup1Controllers()
		_, serr := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
		h.SwapAccounting = serr == nil
	}
	if b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled"); err == nil {
		h.AppArmor = strings.TrimSpace(string(b)) == "Y"
	}
	if b, err := os.ReadFile("/proc/self/oom_score_adj"); err == nil {
		h.OOMScoreAdj, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	h.Devices = hostDevices("/dev")
	h.OnlineCPUs = onlineList("/sys/devices/system/cpu/online")
	h.OnlineMems = onlineList("/sys/devices/system/node/online")
	return h, nil
}

// boundingSet parses CapBnd from a /proc/<pid>/status file.
func boundingSet(statusPath string) (map[string]bool, error) {
	data, err := os.ReadFile(statusPath)
	if err != nil {
		return nil, fmt.Errorf("read capability bounding set: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		v, ok := strings.CutPrefix(line, "CapBnd:")
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("parse CapBnd %q: %w", v, err)
		}
		return capsFromMask(mask), nil
	}
	return nil, fmt.Errorf("no CapBnd in %s", statusPath)
}

func capsFromMask(mask uint64) map[string]bool {
	set := map[string]bool{}
	for i, name := range capNames {
		if mask&(1<<uint(i)) != 0 {
			set[name] = true
		}
	}
	return set
}

func cgroup2Controllers(path string) map[string]bool {
	set := map[string]bool{}
	data, err := os.ReadFile(path)
	if err != nil {
		return set
	}
	for _, c := range strings.Fields(string(data)) {
		set[c] = true
	}
	// cpuacct and devices have no v2 file but work through cpu and BPF.
	set["devices"] = true
	return set
}

// cgroup1Controllers lists the controllers of the mounted v1 hierarchies.
// /proc/cgroups is not enough: it lists controllers that are compiled in
// but mounted nowhere (hugetlb on this kind of host), which runc cannot use.
func cgroup1Controllers() map[string]bool {
	set := map[string]bool{}
	mounts, _ := cgroups.Mounts()
	for _, m := range mounts {
		for _, c := range m.Controllers {
			set[c] = true
		}
	}
	return set
}

// hostDevices lists the device nodes under dir (recursively), skipping
// the pseudo filesystems that containers get their own instances of.
func hostDevices(dir string) []Device {
	var out []Device
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			switch p {
			case "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/fd", "/dev/.lxc", "/dev/.udev":
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type()&os.ModeDevice == 0 || p == "/dev/console" {
			return nil
		}
		if dev, err := DeviceFromPath(p); err == nil {
			out = append(out, dev)
		}
		return nil
	})
	return out
}

// DeviceFromPath stats a device node.
func DeviceFromPath(p string) (Device, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return Device{}, err
	}
	var typ string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default:
		return Device{}, fmt.Errorf("%s is not a device node", p)
	}
	rdev := uint64(st.Rdev) //nolint:unconvert // Rdev is uint32 on some arches
	return Device{
		Path: p, Type: typ,
		Major:    int64(unix.Major(rdev)),
		Minor:    int64(unix.Minor(rdev)),
		FileMode: os.FileMode(st.Mode &^ unix.S_IFMT),
		UID:      st.Uid, GID: st.Gid,
	}, nil
}
