package spec

import (
	"os"
	"strconv"
	"strings"
)

// maxCPUSetIndex bounds the numbers of a cpuset list, so that a list
// like "0-4000000000" is refused rather than expanded.
const maxCPUSetIndex = 1 << 16

// parseCPUSet expands a cpuset list ("0-3,5") already matched by
// cpusetRE into its members; ok is false for a range running backwards
// or past maxCPUSetIndex, or for a list naming more members in all than
// there can be distinct ones (many repeated wide ranges would otherwise
// keep a request busy for minutes).
func parseCPUSet(s string) (set map[int]bool, ok bool) {
	set = map[int]bool{}
	named := 0
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, false
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, false
			}
		}
		if named += b - a + 1; b < a || b > maxCPUSetIndex || named > maxCPUSetIndex+1 {
			return nil, false
		}
		for i := a; i <= b; i++ {
			set[i] = true
		}
	}
	return set, true
}

// checkCPUSet refuses a cpuset list naming a CPU (or memory node) that
// is not in online, the host's list; an unknown online list ("") lets
// any well-formed list through.
func checkCPUSet(what, list, online string) error {
	want, ok := parseCPUSet(list)
	if !ok {
		return invalid("%s %q is not a list of ascending ranges", what, list)
	}
	if online == "" {
		return nil
	}
	have, ok := parseCPUSet(online)
	if !ok {
		return nil
	}
	for i := range want {
		if !have[i] {
			return invalid("%s %q names %d, which this host does not have (online: %s)", what, list, i, online)
		}
	}
	return nil
}

// onlineList reads a kernel list file such as
// /sys/devices/system/cpu/online; "" when it cannot.
func onlineList(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(b))
	if !cpusetRE.MatchString(s) {
		return ""
	}
	return s
}
