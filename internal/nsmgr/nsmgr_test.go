package nsmgr

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/idmap"
)

// TestMain lets the test binary act as the helper, the same way berthd
// does, since Manager re-executes /proc/self/exe.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == ChildCommand {
		os.Exit(ChildMain())
	}
	os.Exit(m.Run())
}

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

func nsenter(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("nsenter", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter %v: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestPinApplyUnpin(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	m := New(root, slog.Default())
	hostPorts, _ := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	start := time.Now()
	p, err := m.Pin(context.Background(), Request{
		ID: "pod1", Net: true, IPC: true, UTS: true, Hostname: "pinned-host",
		Sysctls: map[string]string{"net.ipv4.ip_unprivileged_port_start": "53", "kernel.shm_rmid_forced": "1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pin took %v", time.Since(start))
	for _, path := range []string{p.Net, p.IPC, p.UTS} {
		if !m.IsPinned(path) {
			t.Fatalf("%s is not a namespace mount", path)
		}
	}
	if got := nsenter(t, "--uts="+p.UTS, "hostname"); got != "pinned-host" {
		t.Errorf("hostname %q", got)
	}
	if got := nsenter(t, "--net="+p.Net, "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"); got != "53" {
		t.Errorf("netns sysctl %q", got)
	}
	if got := nsenter(t, "--ipc="+p.IPC, "cat", "/proc/sys/kernel/shm_rmid_forced"); got != "1" {
		t.Errorf("ipc sysctl %q", got)
	}
	if got := nsenter(t, "--net="+p.Net, "cat", "/sys/class/net/lo/operstate"); got == "down" {
		t.Errorf("lo is down")
	}
	now, _ := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if string(now) != string(hostPorts) {
		t.Errorf("host sysctl changed: %q -> %q", hostPorts, now)
	}
	if err := m.Unpin(p); err != nil {
		t.Fatal(err)
	}
	if err := m.Unpin(p); err != nil {
		t.Fatalf("second unpin: %v", err)
	}
	for _, path := range []string{p.Net, p.IPC, p.UTS} {
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("%s still exists: %v", path, err)
		}
	}
}

func TestPinBadSysctlLeavesNothing(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	m := New(root, slog.Default())
	_, err := m.Pin(context.Background(), Request{
		ID: "pod2", Net: true, UTS: true,
		Sysctls: map[string]string{"net.ipv4.no_such_thing": "1"},
	})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("want InvalidArgument, got %v", err)
	}
	for _, kind := range []string{Net, UTS} {
		if _, err := os.Stat(m.Path(kind, "pod2")); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", kind, err)
		}
	}
}

func TestPinRejectsBadID(t *testing.T) {
	m := New(t.TempDir(), slog.Default())
	for _, id := range []string{"", "..", "a/b"} {
		if _, err := m.Pin(context.Background(), Request{ID: id, Net: true}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("id %q: %v", id, err)
		}
	}
}

func TestPinNothing(t *testing.T) {
	m := New(t.TempDir(), slog.Default())
	p, err := m.Pin(context.Background(), Request{ID: "x"})
	if err != nil || p != (Paths{}) {
		t.Fatalf("%v %v", p, err)
	}
}

// TestPinUserNS pins a user namespace with the others and checks that it
// owns them, has the mapping, and that everything goes with Unpin.
func TestPinUserNS(t *testing.T) {
	needRoot(t)
	m := New(t.TempDir(), slog.Default())
	mp := &idmap.Mappings{UIDs: []idmap.Mapping{{HostID: 200000, Size: 65536}}, GIDs: []idmap.Mapping{{HostID: 200000, Size: 65536}}}
	p, err := m.Pin(context.Background(), Request{ID: "podu", Net: true, IPC: true, UTS: true, Hostname: "userns-host",
		Sysctls: map[string]string{"net.ipv4.ip_unprivileged_port_start": "80", "kernel.shm_rmid_forced": "1"}, UserNS: mp})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{p.Net, p.IPC, p.UTS, p.User} {
		if !m.IsPinned(path) {
			t.Fatalf("%q is not a namespace mount", path)
		}
	}
	if got := nsenter(t, "--user="+p.User, "cat", "/proc/self/uid_map"); strings.Join(strings.Fields(got), " ") != "0 200000 65536" {
		t.Errorf("uid_map %q", got)
	}
	var userSt unix.Stat_t
	if err := unix.Stat(p.User, &userSt); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{p.Net, p.IPC, p.UTS} {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		owner, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_USERNS)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		var st unix.Stat_t
		err = unix.Fstat(owner, &st)
		unix.Close(owner)
		if err != nil || st.Ino != userSt.Ino {
			t.Errorf("%s is owned by user ns %d, want the pinned %d (%v)", path, st.Ino, userSt.Ino, err)
		}
	}
	if got := nsenter(t, "--uts="+p.UTS, "hostname"); got != "userns-host" {
		t.Errorf("hostname %q", got)
	}
	if got := nsenter(t, "--net="+p.Net, "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"); got != "80" {
		t.Errorf("netns sysctl %q", got)
	}
	if err := m.Unpin(p); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{p.Net, p.IPC, p.UTS, p.User} {
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("%s still exists: %v", path, err)
		}
	}
}

func TestPinUserNSBadSysctlLeavesNothing(t *testing.T) {
	needRoot(t)
	m := New(t.TempDir(), slog.Default())
	mp := &idmap.Mappings{UIDs: []idmap.Mapping{{HostID: 200000, Size: 65536}}, GIDs: []idmap.Mapping{{HostID: 200000, Size: 65536}}}
	_, err := m.Pin(context.Background(), Request{ID: "podv", Net: true, UTS: true, UserNS: mp,
		Sysctls: map[string]string{"net.ipv4.no_such_thing": "1"}})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("want InvalidArgument, got %v", err)
	}
	for _, kind := range []string{Net, UTS, User} {
		if _, err := os.Stat(m.Path(kind, "podv")); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", kind, err)
		}
	}
}
