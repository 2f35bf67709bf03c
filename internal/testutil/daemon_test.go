package testutil

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestUnescapeMountPath(t *testing.T) {
	for in, want := range map[string]string{
		`/a/b`:            `/a/b`,
		`/a\040b`:         `/a b`,
		`/x\011y\134z`:    "/x\ty\\z",
		`/trailing\04`:    `/trailing\04`,
		`/not\999octal\0`: `/not\999octal\0`,
	} {
		if got := unescapeMountPath(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUnmountUnder(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir, err := os.MkdirTemp("/tmp", "bt")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	a, b, sp := filepath.Join(dir, "a"), filepath.Join(dir, "a", "b"), filepath.Join(dir, "with space")
	for _, m := range []string{a, b, sp} {
		if err := os.MkdirAll(m, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mount("tmpfs", m, "tmpfs", 0, "size=1m"); err != nil {
			t.Skipf("cannot mount tmpfs here: %v", err)
		}
		if m == a { // b lives inside the new tmpfs at a
			os.MkdirAll(b, 0o755)
		}
	}
	// Stack a second mount on a.
	if err := syscall.Mount("tmpfs", a, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	if got, _ := mountsUnder(dir); len(got) != 4 {
		t.Fatalf("mounts = %q, want 4", got)
	}
	if err := unmountUnder(dir); err != nil {
		t.Fatal(err)
	}
	if got, _ := mountsUnder(dir); len(got) != 0 {
		t.Fatalf("mounts left: %q", got)
	}
}

// TestDaemon runs the real berthd once the tree builds; until then it skips.
func TestDaemon(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if testing.Short() {
		t.Skip("builds berthd")
	}
	bin := t.TempDir()
	if err := BuildBinaries(bin); err != nil {
		msg := err.Error()
		if len(msg) > 600 {
			msg = msg[:600] + "..."
		}
		t.Skipf("berthd does not build yet: %s", msg)
	}
	var dir string
	t.Run("lifecycle", func(t *testing.T) {
		d := StartDaemon(t, DaemonOptions{
			BinDir:  bin,
			DropIns: map[string]string{"10-test.toml": "[berth.image]\npinned_images = [\"example.com/pinned:*\"]\n"},
		})
		dir = d.Dir
		if len(d.Socket) >= 100 {
			t.Errorf("socket path too long: %s", d.Socket)
		}
		version(t, d)

		out, err := d.Command("config").Output()
		if err != nil {
			t.Fatalf("berthd config: %v", err)
		}
		for _, want := range []string{d.Socket, filepath.Join(d.Dir, "storage"), "example.com/pinned:*"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("berthd config lacks %q:\n%s", want, out)
			}
		}
		if _, err := d.CLI(t, "version"); err != nil {
			t.Errorf("berth version: %v", err)
		}

		d.Signal(t, syscall.SIGHUP)
		version(t, d)
		d.Restart(t)
		version(t, d)
		d.Kill(t)
		d.Start(t)
		version(t, d)
		if d.Log() == "" {
			t.Errorf("no daemon log")
		}
		d.Stop(t)
		if exited, err := d.Exited(); !exited || err != nil {
			t.Errorf("after Stop: exited=%v err=%v", exited, err)
		}
	})
	if dir == "" {
		return
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("daemon dir %s left behind: %v", dir, err)
	}
	if m, _ := mountsUnder(dir); len(m) > 0 {
		t.Errorf("mounts left: %q", m)
	}
}

func version(t *testing.T, d *Daemon) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := d.Runtime.Version(ctx, &runtimeapi.VersionRequest{Version: "v1"})
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	if v.RuntimeName == "" || v.RuntimeApiVersion != "v1" {
		t.Errorf("Version = %+v", v)
	}
}
