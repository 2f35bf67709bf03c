package network

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/errdefs"
)

func conf(name, plugin string) string {
	return `{"cniVersion": "1.0.0", "name": "` + name + `", "plugins": [{"type": "` + plugin + `"}]}`
}

func newTestManager(t *testing.T, def string) (*Manager, string) {
	dir := t.TempDir()
	m := New(Options{ConfDir: dir, PluginDirs: []string{"/usr/lib/cni"}, DefaultNetwork: def, CacheDir: t.TempDir()}, slog.Default())
	t.Cleanup(func() { m.Close() })
	return m, dir
}

func waitReady(t *testing.T, m *Manager, want bool) string {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		ready, _, msg := m.Status()
		if ready == want {
			return msg
		}
		if time.Now().After(deadline) {
			t.Fatalf("ready stayed %v: %s", ready, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConfigSelectionAndWatch(t *testing.T) {
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		t.Skip("no CNI plugins")
	}
	m, dir := newTestManager(t, "")
	if msg := waitReady(t, m, false); !strings.Contains(msg, "no CNI configuration file") {
		t.Fatalf("message %q", msg)
	}
	// A missing plugin makes a config unusable; the next one is taken.
	os.WriteFile(filepath.Join(dir, "10-a.conflist"), []byte(conf("a", "no-such-plugin")), 0o644)
	os.WriteFile(filepath.Join(dir, "20-b.conflist"), []byte(conf("b", "bridge")), 0o644)
	waitReady(t, m, true)
	if m.NetworkName() != "b" {
		t.Fatalf("network %q", m.NetworkName())
	}
	os.Remove(filepath.Join(dir, "20-b.conflist"))
	if msg := waitReady(t, m, false); !strings.Contains(msg, "no-such-plugin") {
		t.Fatalf("message %q", msg)
	}
}

func TestDefaultNetwork(t *testing.T) {
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		t.Skip("no CNI plugins")
	}
	m, dir := newTestManager(t, "second")
	os.WriteFile(filepath.Join(dir, "10-a.conflist"), []byte(conf("first", "bridge")), 0o644)
	if msg := waitReady(t, m, false); !strings.Contains(msg, `"second" not found`) {
		t.Fatalf("message %q", msg)
	}
	os.WriteFile(filepath.Join(dir, "20-b.conf"), []byte(`{"cniVersion": "0.4.0", "name": "second", "type": "bridge"}`), 0o644)
	waitReady(t, m, true)
	if m.NetworkName() != "second" {
		t.Fatalf("network %q", m.NetworkName())
	}
}

func TestValidatePortMappings(t *testing.T) {
	good := []PortMapping{
		{HostPort: 80, ContainerPort: 80, Protocol: "tcp"},
		{HostPort: 80, ContainerPort: 80, Protocol: "udp"},
		{HostPort: 80, ContainerPort: 81, Protocol: "tcp", HostIP: "127.0.0.1"},
		{HostPort: 0, ContainerPort: 82, Protocol: "tcp"},
		{HostPort: 0, ContainerPort: 83, Protocol: "tcp"},
	}
	if err := ValidatePortMappings(good); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]PortMapping{
		{{HostPort: 80, ContainerPort: 80, Protocol: "tcp"}, {HostPort: 80, ContainerPort: 81, Protocol: "tcp"}},
		{{HostPort: 80, ContainerPort: 0, Protocol: "tcp"}},
		{{HostPort: 70000, ContainerPort: 80, Protocol: "tcp"}},
		{{HostPort: 80, ContainerPort: 80, Protocol: "icmp"}},
		{{HostPort: 80, ContainerPort: 80, Protocol: "tcp", HostIP: "nope"}},
	} {
		if err := ValidatePortMappings(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%v accepted: %v", bad, err)
		}
	}
}

func TestPodCIDR(t *testing.T) {
	m, _ := newTestManager(t, "")
	if err := m.SetPodCIDR("10.1.0.0/16,fd00::/64"); err != nil {
		t.Fatal(err)
	}
	rt := m.runtimeConf(Attachment{PodID: "p", PortMappings: []PortMapping{{ContainerPort: 80, Protocol: "tcp"}}})
	if _, ok := rt.CapabilityArgs["portMappings"]; ok {
		t.Error("a mapping without host port reached CNI")
	}
	if r, ok := rt.CapabilityArgs["ipRanges"].([][]map[string]string); !ok || len(r) != 2 || r[1][0]["subnet"] != "fd00::/64" {
		t.Errorf("ipRanges %v", rt.CapabilityArgs["ipRanges"])
	}
	if err := m.SetPodCIDR("10.1.0.1"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad CIDR: %v", err)
	}
}

// TestShippedConflist: the default config berth installs parses and
// names only plugins Debian's containernetworking-plugins has.
func TestShippedConflist(t *testing.T) {
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		t.Skip("no CNI plugins")
	}
	list, err := loadFile("../../contrib/cni/10-berth-bridge.conflist")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := newTestManager(t, "")
	if err := m.checkPlugins(list); err != nil || list.Name != "berth" || len(list.Plugins) != 3 {
		t.Fatalf("%v %s %d", err, list.Name, len(list.Plugins))
	}
}
