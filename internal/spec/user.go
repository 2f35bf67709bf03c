package spec

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// maxIDFile bounds how much of an image's /etc/passwd or /etc/group is
// read: the files are untrusted and could be made huge.
const maxIDFile = 4 << 20

// User is the identity the container process runs as.
type User struct {
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
	// AdditionalGids are the supplementary groups, primary excluded.
	AdditionalGids []uint32 `json:"additional_gids,omitempty"`
	// Home is the user's home directory from /etc/passwd, "/" if none.
	Home string `json:"home"`
	// Name is the user name when /etc/passwd knows the uid.
	Name string `json:"name,omitempty"`
}

// Groups is the process's group list: the primary gid, then the
// supplementary ones. The primary is in it as with CRI-O and containerd,
// so the process keeps its own group's access after setgroups, and the
// list is what ContainerStatus reports.
func (u *User) Groups() []uint32 {
	return append([]uint32{u.GID}, u.AdditionalGids...)
}

type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// readInRoot reads file p inside root without following any symlink or
// ".." out of it: root is an untrusted image. A missing file is nil, nil.
func readInRoot(root, p string) ([]byte, error) {
	f, err := pathrs.OpenInRoot(root, p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		// A symlink loop, a link out of the rootfs or a non-directory on
		// the way is the image's doing, not the node's.
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOTDIR) {
			return nil, fmt.Errorf("the image's %s cannot be used: %w (%w)", p, err, errdefs.ErrInvalidArgument)
		}
		return nil, fmt.Errorf("open %s in the container: %w", p, err)
	}
	defer f.Close()
	// OpenInRoot returns an O_PATH handle; reopen it for reading.
	rf, err := pathrs.Reopen(f, 0)
	if err != nil {
		return nil, fmt.Errorf("read %s in the container: %w", p, err)
	}
	defer rf.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(rf, maxIDFile)); err != nil {
		return nil, fmt.Errorf("read %s in the container: %w", p, err)
	}
	return buf.Bytes(), nil
}

func parsePasswd(data []byte) []passwdEntry {
	var out []passwdEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 4 || strings.HasPrefix(f[0], "#") || f[0] == "" {
			continue
		}
		uid, err1 := parseID(f[2])
		gid, err2 := parseID(f[3])
		if err1 != nil || err2 != nil {
			continue
		}
		e := passwdEntry{name: f[0], uid: uid, gid: gid}
		if len(f) >= 6 {
			e.home = f[5]
		}
		out = append(out, e)
	}
	return out
}

func parseGroup(data []byte) []groupEntry {
	var out []groupEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 3 || strings.HasPrefix(f[0], "#") || f[0] == "" {
			continue
		}
		gid, err := parseID(f[2])
		if err != nil {
			continue
		}
		e := groupEntry{name: f[0], gid: gid}
		if len(f) >= 4 && f[3] != "" {
			e.members = strings.Split(f[3], ",")
		}
		out = append(out, e)
	}
	return out
}

// parseID parses a uid or gid; ids above 2^31-1 are refused because the
// kernel and most tools treat them as negative or invalid.
func parseID(s string) (uint32, error) {
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, err
	}
	return checkID(v)
}

func checkID(v int64) (uint32, error) {
	if v < 0 || v > math.MaxInt32 {
		return 0, fmt.Errorf("id %d is outside 0..%d: %w", v, math.MaxInt32, errdefs.ErrInvalidArgument)
	}
	return uint32(v), nil
}

// resolveUser works out uid, gid, supplementary groups and home the way
// the kubelet expects: RunAsUser, else RunAsUsername, else the image's
// USER (name or uid, optionally ":group"), else root; RunAsGroup
// overrides the primary group. Names resolve through the container's own
// /etc/passwd and /etc/group, read safely inside rootfs.
func resolveUser(rootfs, imageUser string, sc *runtimeapi.LinuxContainerSecurityContext) (*User, error) {
	var passwd []passwdEntry
	var groups []groupEntry
	if rootfs != "" {
		pw, err := readInRoot(rootfs, "/etc/passwd")
		if err != nil {
			return nil, err
		}
		gr, err := readInRoot(rootfs, "/etc/group")
		if err != nil {
			return nil, err
		}
		passwd, groups = parsePasswd(pw), parseGroup(gr)
	}
	byUID := func(uid uint32) *passwdEntry {
		for i := range passwd {
			if passwd[i].uid == uid {
				return &passwd[i]
			}
		}
		return nil
	}
	byName := func(name string) *passwdEntry {
		for i := range passwd {
			if passwd[i].name == name {
				return &passwd[i]
			}
		}
		return nil
	}
	u := &User{}
	var entry *passwdEntry
	userSpec, groupSpec := imageUser, ""
	if i := strings.IndexByte(imageUser, ':'); i >= 0 {
		userSpec, groupSpec = imageUser[:i], imageUser[i+1:]
	}
	switch {
	case sc.GetRunAsUser() != nil:
		uid, err := checkID(sc.GetRunAsUser().GetValue())
		if err != nil {
			return nil, fmt.Errorf("run_as_user: %w", err)
		}
		u.UID, entry = uid, byUID(uid)
		groupSpec = ""
	case sc.GetRunAsUsername() != "":
		name := sc.GetRunAsUsername()
		if entry = byName(name); entry == nil {
			return nil, fmt.Errorf("run_as_username %q: no such user in the container's /etc/passwd: %w", name, errdefs.ErrInvalidArgument)
		}
		u.UID = entry.uid
		groupSpec = ""
	case userSpec != "":
		if isNumeric(userSpec) {
			uid, err := parseID(userSpec)
			if err != nil {
				return nil, fmt.Errorf("image USER %q: %w", imageUser, errors.Join(err, errdefs.ErrInvalidArgument))
			}
			u.UID, entry = uid, byUID(uid)
		} else {
			if entry = byName(userSpec); entry == nil {
				return nil, fmt.Errorf("image USER %q: no user %q in the container's /etc/passwd: %w", imageUser, userSpec, errdefs.ErrInvalidArgument)
			}
			u.UID = entry.uid
		}
	default:
		entry = byUID(0)
	}
	u.Home = "/"
	if entry != nil {
		u.GID, u.Name = entry.gid, entry.name
		if entry.home != "" {
			u.Home = entry.home
		}
	}
	if groupSpec != "" {
		gid, err := resolveGroup(groupSpec, groups)
		if err != nil {
			return nil, fmt.Errorf("image USER %q: %w", imageUser, err)
		}
		u.GID = gid
	}
	if g := sc.GetRunAsGroup(); g != nil {
		gid, err := checkID(g.GetValue())
		if err != nil {
			return nil, fmt.Errorf("run_as_group: %w", err)
		}
		u.GID = gid
	}
	// Supplementary groups: with the Merge policy (the default) the
	// groups /etc/group lists the user in, then the requested ones; with
	// Strict only the requested ones.
	var extra []uint32
	if sc.GetSupplementalGroupsPolicy() != runtimeapi.SupplementalGroupsPolicy_Strict && u.Name != "" {
		for _, g := range groups {
			if slices.Contains(g.members, u.Name) {
				extra = append(extra, g.gid)
			}
		}
	}
	for _, g := range sc.GetSupplementalGroups() {
		gid, err := checkID(g)
		if err != nil {
			return nil, fmt.Errorf("supplemental group: %w", err)
		}
		extra = append(extra, gid)
	}
	for _, g := range extra {
		if g != u.GID && !slices.Contains(u.AdditionalGids, g) {
			u.AdditionalGids = append(u.AdditionalGids, g)
		}
	}
	return u, nil
}

func resolveGroup(spec string, groups []groupEntry) (uint32, error) {
	if isNumeric(spec) {
		gid, err := parseID(spec)
		if err != nil {
			return 0, errors.Join(err, errdefs.ErrInvalidArgument)
		}
		return gid, nil
	}
	for _, g := range groups {
		if g.name == spec {
			return g.gid, nil
		}
	}
	return 0, fmt.Errorf("no group %q in the container's /etc/group: %w", spec, errdefs.ErrInvalidArgument)
}

func isNumeric(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
