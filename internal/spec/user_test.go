package spec

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestUser(t *testing.T) {
	for _, tc := range []struct {
		name      string
		imageUser string
		sc        *runtimeapi.LinuxContainerSecurityContext
		want      User
	}{
		{"default root", "", nil, User{UID: 0, GID: 0, Home: "/root", Name: "root"}},
		{"image name", "app", nil, User{UID: 1000, GID: 1000, Home: "/home/app", Name: "app", AdditionalGids: []uint32{29, 44}}},
		{"image uid", "1001", nil, User{UID: 1001, GID: 1001, Home: "/srv/web", Name: "web", AdditionalGids: []uint32{29}}},
		{"image unknown uid", "4242", nil, User{UID: 4242, GID: 0, Home: "/"}},
		{"image user:group", "app:video", nil, User{UID: 1000, GID: 44, Home: "/home/app", Name: "app", AdditionalGids: []uint32{29}}},
		{"image uid:gid", "5:6", nil, User{UID: 5, GID: 6, Home: "/"}},
		{"run as user wins", "app", &runtimeapi.LinuxContainerSecurityContext{RunAsUser: &runtimeapi.Int64Value{Value: 1001}},
			User{UID: 1001, GID: 1001, Home: "/srv/web", Name: "web", AdditionalGids: []uint32{29}}},
		{"run as username", "", &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "app"},
			User{UID: 1000, GID: 1000, Home: "/home/app", Name: "app", AdditionalGids: []uint32{29, 44}}},
		{"run as group", "app", &runtimeapi.LinuxContainerSecurityContext{RunAsUser: &runtimeapi.Int64Value{Value: 1000}, RunAsGroup: &runtimeapi.Int64Value{Value: 7}},
			User{UID: 1000, GID: 7, Home: "/home/app", Name: "app", AdditionalGids: []uint32{29, 44}}},
		{"supplemental merge", "app", &runtimeapi.LinuxContainerSecurityContext{SupplementalGroups: []int64{1000, 5000, 29}},
			User{UID: 1000, GID: 1000, Home: "/home/app", Name: "app", AdditionalGids: []uint32{29, 44, 5000}}},
		{"supplemental strict", "app", &runtimeapi.LinuxContainerSecurityContext{SupplementalGroups: []int64{5000},
			SupplementalGroupsPolicy: runtimeapi.SupplementalGroupsPolicy_Strict},
			User{UID: 1000, GID: 1000, Home: "/home/app", Name: "app", AdditionalGids: []uint32{5000}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &runtimeapi.ContainerConfig{}
			if tc.sc != nil {
				cfg.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: tc.sc}
			}
			in := input(t, cfg)
			in.Image.User = tc.imageUser
			res := gen(t, in)
			got := res.User
			if got.UID != tc.want.UID || got.GID != tc.want.GID || got.Home != tc.want.Home || got.Name != tc.want.Name ||
				!slices.Equal(got.AdditionalGids, tc.want.AdditionalGids) {
				t.Fatalf("user %+v, want %+v", got, tc.want)
			}
			pu := res.Spec.Process.User
			// The process's groups are the primary gid, then the others.
			if pu.UID != got.UID || pu.GID != got.GID || !slices.Equal(pu.AdditionalGids, append([]uint32{got.GID}, got.AdditionalGids...)) {
				t.Fatalf("spec user %+v does not match %+v", pu, got)
			}
		})
	}
	for _, tc := range []struct {
		name      string
		imageUser string
		sc        *runtimeapi.LinuxContainerSecurityContext
	}{
		{"image user unknown", "ghost", nil},
		{"image group unknown", "app:ghosts", nil},
		{"username unknown", "", &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "ghost"}},
		{"uid too big", "", &runtimeapi.LinuxContainerSecurityContext{RunAsUser: &runtimeapi.Int64Value{Value: 1 << 31}}},
		{"negative uid", "", &runtimeapi.LinuxContainerSecurityContext{RunAsUser: &runtimeapi.Int64Value{Value: -1}}},
		{"image uid too big", "4294967295", nil},
		{"group without user", "", &runtimeapi.LinuxContainerSecurityContext{RunAsGroup: &runtimeapi.Int64Value{Value: 7}}},
		{"gid too big", "", &runtimeapi.LinuxContainerSecurityContext{RunAsUser: &runtimeapi.Int64Value{Value: 1}, RunAsGroup: &runtimeapi.Int64Value{Value: 1 << 32}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &runtimeapi.ContainerConfig{}
			if tc.sc != nil {
				cfg.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: tc.sc}
			}
			in := input(t, cfg)
			in.Image.User = tc.imageUser
			genErr(t, in, errdefs.ErrInvalidArgument)
		})
	}
}

// A symlinked /etc/passwd must be resolved inside the rootfs, never on
// the host.
func TestUserSymlinkStaysInRoot(t *testing.T) {
	in := input(t, &runtimeapi.ContainerConfig{})
	outside := t.TempDir()
	write(t, filepath.Join(outside, "passwd"), "evil:x:0:0::/evil:/bin/sh\n")
	pw := filepath.Join(in.RootFS, "etc/passwd")
	os.Remove(pw)
	if err := os.Symlink(filepath.Join(outside, "passwd"), pw); err != nil {
		t.Fatal(err)
	}
	in.Image.User = "evil"
	genErr(t, in, errdefs.ErrInvalidArgument)
	// A relative climb resolves to the rootfs' own /passwd (missing).
	os.Remove(pw)
	if err := os.Symlink("../../../../../../"+outside+"/passwd", pw); err != nil {
		t.Fatal(err)
	}
	genErr(t, in, errdefs.ErrInvalidArgument)
}

func TestNoPasswd(t *testing.T) {
	in := input(t, &runtimeapi.ContainerConfig{})
	in.RootFS = t.TempDir()
	in.Image.User = "123"
	res := gen(t, in)
	if res.User.UID != 123 || res.User.GID != 0 || res.User.Home != "/" {
		t.Fatalf("user %+v", res.User)
	}
}

// An image whose /etc/passwd is a symlink climbing out of the rootfs
// (CVE-2024-5154 class) loops back onto itself inside the rootfs: the
// lookup is refused as the image's fault, never served from the host.
func TestResolveUserPasswdLinkLoops(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../etc/passwd", filepath.Join(root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	_, err := resolveUser(root, "daemon", nil)
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "/etc/passwd") {
		t.Fatalf("got %v, want InvalidArgument naming /etc/passwd", err)
	}
}
