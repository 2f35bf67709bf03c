// Package idmap holds what berth needs for pods in their own user
// namespace (Kubernetes hostUsers: false): the uid/gid mappings a pod
// asks for and the rules they must keep, the host's subordinate id
// ranges they must stay inside, and idmapped mounts (open_tree,
// mount_setattr with MOUNT_ATTR_IDMAP, move_mount) through which the
// container's root and volumes are seen with the pod's ids. berth never
// chowns files for a user namespace.
//
// The subordinate range: when /etc/subuid (/etc/subgid) has entries for
// the user "containers" (CRI-O's convention), a pod's host ids must lie
// inside one of them; otherwise inside [65536, 2^32-1), the range the
// kubelet hands out by default, which keeps host root and the node's
// ordinary users out of every pod's mapping.
package idmap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Mapping maps Size ids from ContainerID inside the namespace to HostID
// outside it, as a line of /proc/<pid>/uid_map does.
type Mapping struct {
	ContainerID uint32 `json:"container_id"`
	HostID      uint32 `json:"host_id"`
	Size        uint32 `json:"size"`
}

// Mappings are a user namespace's uid and gid mappings.
type Mappings struct {
	UIDs []Mapping `json:"uids"`
	GIDs []Mapping `json:"gids"`
}

// Range is a run of host ids [Start, Start+Size).
type Range struct {
	Start, Size uint64
}

// maxID bounds a mapped range: the kernel refuses a mapping whose end
// wraps to 0, and id 2^32-1 is (uid_t)-1, "no id".
const maxID = 1<<32 - 1

// DefaultSubordinate is the host range used when /etc/subuid or
// /etc/subgid names no "containers" user.
var defaultSubordinate = []Range{{Start: 65536, Size: maxID - 65536}}

// SubUser is the user whose /etc/subuid and /etc/subgid entries bound the
// host ids of pods' mappings.
const SubUser = "containers"

// Subordinate is the host's subordinate ranges for uids and gids.
type Subordinate struct {
	UIDs, GIDs []Range
}

// ReadSubordinate reads the ranges of SubUser from subuid and subgid
// files (/etc/subuid, /etc/subgid); a file that is missing or names no
// such user gives the default range for that kind.
func ReadSubordinate(subuid, subgid string) (Subordinate, error) {
	u, err := readSubFile(subuid)
	if err != nil {
		return Subordinate{}, err
	}
	g, err := readSubFile(subgid)
	if err != nil {
		return Subordinate{}, err
	}
	return Subordinate{UIDs: u, GIDs: g}, nil
}

func readSubFile(path string) ([]Range, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return slices.Clone(defaultSubordinate), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	r, err := parseSub(f, SubUser)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(r) == 0 {
		return slices.Clone(defaultSubordinate), nil
	}
	return r, nil
}

// parseSub reads the "name:start:count" lines of user from a subuid or
// subgid file; malformed lines are skipped, as shadow-utils does.
func parseSub(r io.Reader, user string) ([]Range, error) {
	var out []Range
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, ":")
		if len(parts) != 3 || parts[0] != user {
			continue
		}
		start, err1 := strconv.ParseUint(parts[1], 10, 32)
		size, err2 := strconv.ParseUint(parts[2], 10, 32)
		if err1 != nil || err2 != nil || size == 0 {
			continue
		}
		out = append(out, Range{Start: start, Size: size})
	}
	return out, sc.Err()
}

func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errdefs.ErrInvalidArgument)...)
}

// Validate checks one kind of mapping (field names it in errors, e.g.
// "userns_options.uids"): each entry non-empty and inside 32 bits, no two
// overlapping on either side, exactly one entry, container id 0 mapped,
// and the host side inside one of the allowed ranges.
func Validate(field string, ms []Mapping, allowed []Range) error {
	for i, m := range ms {
		if m.Size == 0 {
			return invalid("%s[%d]: length is 0", field, i)
		}
		if uint64(m.HostID)+uint64(m.Size) > maxID {
			return invalid("%s[%d]: host ids %d..%d reach beyond 2^32-1", field, i, m.HostID, uint64(m.HostID)+uint64(m.Size)-1)
		}
		if uint64(m.ContainerID)+uint64(m.Size) > maxID {
			return invalid("%s[%d]: container ids %d..%d reach beyond 2^32-1", field, i, m.ContainerID, uint64(m.ContainerID)+uint64(m.Size)-1)
		}
	}
	for i := range ms {
		for j := i + 1; j < len(ms); j++ {
			a, b := ms[i], ms[j]
			if overlap(a.HostID, a.Size, b.HostID, b.Size) {
				return invalid("%s[%d] and [%d]: host ranges overlap", field, i, j)
			}
			if overlap(a.ContainerID, a.Size, b.ContainerID, b.Size) {
				return invalid("%s[%d] and [%d]: container ranges overlap", field, i, j)
			}
		}
	}
	if len(ms) != 1 {
		return invalid("%s: exactly one mapping is supported, got %d", field, len(ms))
	}
	m := ms[0]
	if m.ContainerID != 0 {
		return invalid("%s: container id 0 must be mapped (the mapping starts at container id %d)", field, m.ContainerID)
	}
	for _, r := range allowed {
		if uint64(m.HostID) >= r.Start && uint64(m.HostID)+uint64(m.Size) <= r.Start+r.Size {
			return nil
		}
	}
	return invalid("%s: host ids %d..%d are outside the host's subordinate ids for user %q (%s)",
		field, m.HostID, uint64(m.HostID)+uint64(m.Size)-1, SubUser, formatRanges(allowed))
}

func overlap(a, an, b, bn uint32) bool {
	return uint64(a) < uint64(b)+uint64(bn) && uint64(b) < uint64(a)+uint64(an)
}

func formatRanges(rs []Range) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%d..%d", r.Start, r.Start+r.Size-1)
	}
	return strings.Join(parts, ", ")
}

// HostID returns the host id that container id maps to, and whether it
// is mapped at all.
func HostID(ms []Mapping, id uint32) (uint32, bool) {
	for _, m := range ms {
		if id >= m.ContainerID && uint64(id) < uint64(m.ContainerID)+uint64(m.Size) {
			return m.HostID + (id - m.ContainerID), true
		}
	}
	return 0, false
}

// OCI converts ms for an OCI runtime spec's linux.uidMappings or
// linux.gidMappings.
func OCI(ms []Mapping) []specs.LinuxIDMapping {
	out := make([]specs.LinuxIDMapping, len(ms))
	for i, m := range ms {
		out[i] = specs.LinuxIDMapping{ContainerID: m.ContainerID, HostID: m.HostID, Size: m.Size}
	}
	return out
}
