package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/imagebuild"
	"github.com/berth-cri/berth/internal/testutil"
)

// TestHostileImageLayers pulls images whose layers try to write outside
// the rootfs: "../" names, absolute names, a symlink to a host directory
// with a file written through it, and a directory replaced by such a
// symlink in a later layer. Whether a pull is refused or the entries
// land inside the image, the host directory they aim at stays as it was,
// and a container of an image that pulled sees only its own files.
func TestHostileImageLayers(t *testing.T) {
	e := startHostileEnv(t)
	victim := e.guard.victim
	climb := strings.Repeat("../", 24) + strings.TrimPrefix(victim, "/")
	for _, tc := range []struct {
		name  string
		raw   [][]imagebuild.RawEntry
		probe string // a path inside the container that holds what the layer wrote, if it pulled
	}{
		{"dot-dot entry", [][]imagebuild.RawEntry{{rawFile(climb+"/dotdot", "escaped\n")}}, ""},
		{"absolute entry", [][]imagebuild.RawEntry{{rawFile(victim+"/absolute", "escaped\n")}}, victim + "/absolute"},
		{"symlink then file through it", [][]imagebuild.RawEntry{{
			rawSymlink("escape", victim), rawFile("escape/through-link", "escaped\n"),
		}}, ""},
		{"relative symlink climbing out", [][]imagebuild.RawEntry{{
			rawSymlink("up", strings.Repeat("../", 24)+strings.TrimPrefix(victim, "/")), rawFile("up/through-rel-link", "escaped\n"),
		}}, ""},
		{"directory replaced by a symlink", [][]imagebuild.RawEntry{
			{rawDir("data/"), rawFile("data/keep", "inside\n")},
			{rawSymlink("data", victim)},
			{rawFile("data/through-swapped-dir", "escaped\n")},
		}, "/data/through-swapped-dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := imageName("hostile", tc.name)
			ref := e.push(t, name, busyboxWith(t, testutil.ImageSpec{}, nil, tc.raw...))
			if err := e.pull(t, ref); err != nil {
				t.Logf("pull refused: %v", err)
				e.guard.assertUntouched(t)
				return
			}
			cfg := e.config(strings.Split(name, ":")[0][len("hostile/"):], "sh", "-c", "cat "+tc.probe+" 2>&1; ls "+victim+" 2>&1; true")
			cfg.Image.Image = ref
			out, _ := e.runAndWait(t, cfg)
			t.Logf("pulled; inside the container: %q", out)
			if strings.Contains(out, "canary") {
				t.Errorf("the container sees the host's %s: %q", victim, out)
			}
			e.guard.assertUntouched(t)
		})
	}
}

// TestHostileImageEtcSymlinks runs images whose /etc/passwd, /etc/group
// or whole /etc are symlinks climbing out of the rootfs
// (CVE-2024-5154 class). The user lookup must never read the host's
// files: "daemon" exists on the host but not in these images. Writing
// hosts, resolv.conf and hostname into such an /etc must stay inside
// the rootfs.
func TestHostileImageEtcSymlinks(t *testing.T) {
	e := startHostileEnv(t)
	up := strings.Repeat("../", 24)
	if !strings.Contains(readFile(t, "/etc/passwd"), "\ndaemon:") {
		t.Skip("the host has no daemon user to look up")
	}
	t.Run("passwd and group climb out", func(t *testing.T) {
		ref := e.push(t, "hostile/etc-files:1", busyboxWith(t, testutil.ImageSpec{User: "daemon"}, nil, []imagebuild.RawEntry{
			rawSymlink("etc/passwd", up+"etc/passwd"), rawSymlink("etc/group", up+"etc/group"),
		}))
		if err := e.pull(t, ref); err != nil {
			t.Fatal(err)
		}
		cfg := e.config("etcfiles", "id")
		cfg.Image.Image = ref
		if id, err := e.create(t, cfg); err == nil {
			st := e.status(t, id)
			e.remove(t, id)
			t.Fatalf("user daemon resolved through the host's /etc/passwd: %v", st)
		} else {
			expectCode(t, err, codes.InvalidArgument, "/etc/passwd")
		}
		e.guard.assertUntouched(t)
	})
	for i, target := range []string{up + strings.TrimPrefix(e.guard.victim, "/"), e.guard.victim} {
		t.Run("etc is a symlink to "+target, func(t *testing.T) {
			// A later layer's symlink hides the base layer's /etc.
			img := busyboxWith(t, testutil.ImageSpec{}, nil, []imagebuild.RawEntry{rawSymlink("etc", target)})
			ref := e.push(t, fmt.Sprintf("hostile/etc-dir-%d:1", i), img)
			if err := e.pull(t, ref); err != nil {
				t.Fatal(err)
			}
			cfg := e.config(fmt.Sprintf("etcdir%d", i), "sh", "-c", "cat /etc/hostname /etc/hosts /etc/resolv.conf; echo "+e.guard.marker+" > /etc/written; true")
			cfg.Image.Image = ref
			id, err := e.create(t, cfg)
			if err == nil {
				if _, err = e.d.Runtime.StartContainer(ctxT(t, time.Minute), &runtimeapi.StartContainerRequest{ContainerId: id}); err == nil {
					e.waitExited(t, id, time.Minute)
				}
				t.Logf("start: %v", err)
				e.remove(t, id)
			} else {
				t.Logf("create refused: %v", err)
			}
			e.guard.assertUntouched(t)
		})
	}
}

// TestHostileImageConfig runs images whose config is hostile: VOLUME
// paths climbing out or empty (CVE-2022-23648 class), a USER above
// 2^31-1 or a name resolving to one (CVE-2024-40635 class), a HOME in Env
// with a newline (CVE-2022-4318 class) and a WorkingDir in /proc
// (CVE-2024-21626 class). Each is refused or contained; supplementary
// groups of the image's user are applied (CVE-2023-25173 class).
func TestHostileImageConfig(t *testing.T) {
	e := startHostileEnv(t)
	victim := e.guard.victim
	for _, tc := range []struct {
		name   string
		spec   testutil.ImageSpec
		mutate func(*v1.Config)
		raw    [][]imagebuild.RawEntry
		code   codes.Code // OK: created, contained
		want   string
	}{
		{"volume climbing out", testutil.ImageSpec{}, func(c *v1.Config) {
			c.Volumes = map[string]struct{}{"/../../../../../../" + strings.TrimPrefix(victim, "/") + "/vol": {}}
		}, nil, codes.InvalidArgument, "'..'"},
		{"empty volume", testutil.ImageSpec{}, func(c *v1.Config) { c.Volumes = map[string]struct{}{"": {}} }, nil, codes.InvalidArgument, "volume"},
		{"relative volume", testutil.ImageSpec{}, func(c *v1.Config) { c.Volumes = map[string]struct{}{"../vol": {}} }, nil, codes.InvalidArgument, "volume"},
		{"uid above 2^31-1", testutil.ImageSpec{User: "2147483648"}, nil, nil, codes.InvalidArgument, "2147483648"},
		{"gid above 2^31-1", testutil.ImageSpec{User: "1000:4294967295"}, nil, nil, codes.InvalidArgument, "4294967295"},
		{"name resolving to a uid above 2^31-1", testutil.ImageSpec{User: "huge"}, nil, [][]imagebuild.RawEntry{
			{rawFile("etc/passwd", "root:x:0:0::/root:/bin/sh\nhuge:x:4294967294:0::/:/bin/sh\n")}}, codes.InvalidArgument, "huge"},
		{"HOME with a newline", testutil.ImageSpec{Env: []string{"HOME=/root\nevil:x:0:0::/:/bin/sh"}}, nil, nil, codes.InvalidArgument, "newline"},
		{"working dir in /proc", testutil.ImageSpec{}, func(c *v1.Config) { c.WorkingDir = "/proc/self/fd/7" }, nil, codes.InvalidArgument, "/proc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := imageName("cfg", tc.name)
			ref := e.push(t, name, busyboxWith(t, tc.spec, tc.mutate, tc.raw...))
			if err := e.pull(t, ref); err != nil {
				t.Fatal(err)
			}
			cfg := e.config(strings.Split(name, ":")[0][len("cfg/"):], "sh", "-c", "ls -la / "+victim+" 2>&1; id")
			cfg.Image.Image = ref
			if tc.code != codes.OK {
				_, err := e.create(t, cfg)
				expectCode(t, err, tc.code, tc.want)
			} else {
				out, _ := e.runAndWait(t, cfg)
				if strings.Contains(out, "canary") {
					t.Errorf("the container sees the host's %s: %q", victim, out)
				}
			}
			e.guard.assertUntouched(t)
		})
	}
	t.Run("supplementary groups from the image", func(t *testing.T) {
		ref := e.push(t, "hostile/groups:1", testutil.BusyboxImage(t, testutil.ImageSpec{User: "app",
			ExtraLayers: []map[string]string{{"etc/group": "root:x:0:\napp:x:1000:\nextra:x:3000:app\nother:x:3001:root\n"}}}))
		if err := e.pull(t, ref); err != nil {
			t.Fatal(err)
		}
		cfg := e.config("groups", "id", "-G")
		cfg.Image.Image = ref
		out, _ := e.runAndWait(t, cfg)
		if strings.TrimSpace(out) != "1000 3000" {
			t.Errorf("groups of app: %q, want \"1000 3000\"", out)
		}
	})
	if _, err := os.Stat(filepath.Join(victim, "vol")); err == nil {
		t.Error("an image volume was created on the host")
	}
}
