package idmap

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestValidate(t *testing.T) {
	allowed := []Range{{Start: 65536, Size: maxID - 65536}}
	good := Mapping{ContainerID: 0, HostID: 65536 * 3, Size: 65536}
	if err := Validate("uids", []Mapping{good}, allowed); err != nil {
		t.Fatalf("good mapping refused: %v", err)
	}
	for name, tc := range map[string]struct {
		ms   []Mapping
		want string
	}{
		"zero length":      {[]Mapping{{HostID: 65536, Size: 0}}, "length is 0"},
		"beyond 2^32 host": {[]Mapping{{HostID: 1<<32 - 100, Size: 65536}}, "beyond 2^32-1"},
		"beyond 2^32 ctr":  {[]Mapping{good, {ContainerID: 1<<32 - 10, HostID: 1 << 20, Size: 100}}, "beyond 2^32-1"},
		"host overlap":     {[]Mapping{good, {ContainerID: 70000, HostID: good.HostID + 10, Size: 10}}, "host ranges overlap"},
		"ctr overlap":      {[]Mapping{good, {ContainerID: 10, HostID: 1 << 24, Size: 10}}, "container ranges overlap"},
		"two":              {[]Mapping{good, {ContainerID: 70000, HostID: 1 << 24, Size: 10}}, "exactly one mapping"},
		"none":             {nil, "exactly one mapping"},
		"root unmapped":    {[]Mapping{{ContainerID: 1, HostID: 65536, Size: 65536}}, "container id 0 must be mapped"},
		"host root":        {[]Mapping{{ContainerID: 0, HostID: 0, Size: 65536}}, "outside the host's subordinate ids"},
		"past the range":   {[]Mapping{{ContainerID: 0, HostID: 65536, Size: maxID}}, "beyond 2^32-1"},
	} {
		err := Validate("uids", tc.ms, allowed)
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "uids") {
			t.Errorf("%s: got %v, want InvalidArgument naming uids with %q", name, err, tc.want)
		}
	}
}

func TestReadSubordinate(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "subuid")
	if err := os.WriteFile(sub, []byte("kubelet:65536:65536\n# c\ncontainers:200000:131072\ncontainers:bad:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSubordinate(sub, filepath.Join(dir, "missing"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.UIDs) != 1 || got.UIDs[0] != (Range{Start: 200000, Size: 131072}) {
		t.Errorf("uids %+v", got.UIDs)
	}
	if len(got.GIDs) != 1 || got.GIDs[0] != defaultSubordinate[0] {
		t.Errorf("gids of a missing file %+v, want the default", got.GIDs)
	}
	if err := Validate("uids", []Mapping{{HostID: 65536, Size: 65536}}, got.UIDs); err == nil {
		t.Error("a range outside the containers user's entries was accepted")
	}
	if err := Validate("uids", []Mapping{{HostID: 200000 + 65536, Size: 65536}}, got.UIDs); err != nil {
		t.Errorf("a range inside was refused: %v", err)
	}
}

func TestHostID(t *testing.T) {
	ms := []Mapping{{ContainerID: 0, HostID: 100000, Size: 10}}
	if h, ok := HostID(ms, 3); !ok || h != 100003 {
		t.Errorf("HostID(3) = %d, %v", h, ok)
	}
	if _, ok := HostID(ms, 10); ok {
		t.Error("id 10 is not mapped")
	}
}

// TestProbeAndMount runs the real syscalls: an idmapped overlay (Probe),
// then an idmapped bind of a plain directory, released again.
func TestProbeAndMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	before := countMounts(t)
	if err := Probe(t.TempDir()); err != nil {
		t.Fatalf("probe: %v", err)
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(src, "f"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	uns, stop, err := NewUserNS(Mappings{UIDs: []Mapping{{HostID: 300000, Size: 65536}}, GIDs: []Mapping{{HostID: 300000, Size: 65536}}})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	dir := filepath.Join(t.TempDir(), "maps")
	if err := Mount(src, filepath.Join(dir, "v"), uns); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "v", "f"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 301000 || st.Gid != 301000 {
		t.Errorf("mapped file shows %d:%d, want 301000:301000", st.Uid, st.Gid)
	}
	if err := Release(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(src, "f")); err != nil {
		t.Fatalf("release touched the source: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("dir left: %v", err)
	}
	if after := countMounts(t); after != before {
		t.Errorf("mounts before %d, after %d", before, after)
	}
}

func countMounts(t *testing.T) int {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "\n")
}
