package spec

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// typed reports whether err carries one of errdefs' kinds, which the
// CRI layer maps to a gRPC code: a bare error would reach the kubelet
// as Unknown.
func typed(err error) bool {
	for _, k := range []error{errdefs.ErrInvalidArgument, errdefs.ErrFailedPrecondition, errdefs.ErrNotFound,
		errdefs.ErrPermissionDenied, errdefs.ErrResourceExhausted} {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}

// FuzzGenerate feeds the CRI → OCI spec builder arbitrary container
// configs (a serialized ContainerConfig) and image settings. It must
// never panic, a refusal must be a typed error, and a spec it accepts
// keeps the promises the attack suite relies on: no cwd in /proc, no
// environment entry with a NUL or with a newline in its name or in HOME,
// no mount from a path with "..", an empty inheritable set unless
// ambient capabilities were asked for.
func FuzzGenerate(f *testing.F) {
	seeds := []*runtimeapi.ContainerConfig{
		{Command: []string{"sh"}, WorkingDir: "/srv", Envs: []*runtimeapi.KeyValue{{Key: "A", Value: []byte("1")}}},
		{WorkingDir: "/proc/self/fd/7"},
		{Envs: []*runtimeapi.KeyValue{{Key: "A", Value: []byte("1\nB=2")}}},
		{Mounts: []*runtimeapi.Mount{{ContainerPath: "/m/../../etc", HostPath: "/tmp"}}},
		{Mounts: []*runtimeapi.Mount{{ContainerPath: "/m", HostPath: "/tmp/../etc", Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL}}},
		{Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			RunAsUser: &runtimeapi.Int64Value{Value: 1 << 31}, SupplementalGroups: []int64{-1, 1 << 40},
			Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"ALL"}, AddAmbientCapabilities: []string{"NET_RAW"}, DropCapabilities: []string{"CAP_NOPE"}},
		}}},
		{Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{CpuShares: -1, MemoryLimitInBytes: 1, CpusetCpus: "0-99999999", Unified: map[string]string{"../x": "1"}}}},
		{Devices: []*runtimeapi.Device{{HostPath: "/dev/null", ContainerPath: "/dev/../x", Permissions: "rwmx"}}},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "app", "/work", "PATH=/bin")
	}
	f.Add([]byte{}, "4294967295:0", "/proc/1/cwd", "A=\nB")
	f.Fuzz(func(t *testing.T, data []byte, imageUser, imageWorkDir, imageEnv string) {
		cfg := &runtimeapi.ContainerConfig{}
		if err := proto.Unmarshal(data, cfg); err != nil {
			return
		}
		in := input(t, cfg)
		in.Image.User = imageUser
		in.Image.WorkingDir = imageWorkDir
		in.Image.Env = append(in.Image.Env, imageEnv)
		res, err := Generate(in)
		if err != nil {
			if !typed(err) {
				t.Fatalf("untyped refusal: %v", err)
			}
			return
		}
		p := res.Spec.Process
		if c := filepath.Clean(p.Cwd); c == "/proc" || strings.HasPrefix(c, "/proc/") || !filepath.IsAbs(p.Cwd) {
			t.Fatalf("cwd %q accepted", p.Cwd)
		}
		for _, e := range p.Env {
			k, v, _ := strings.Cut(e, "=")
			if strings.ContainsAny(k, "\n\r\x00") || strings.ContainsRune(v, 0) ||
				(k == "HOME" && strings.ContainsAny(v, "\n\r")) {
				t.Fatalf("env entry %q accepted", e)
			}
		}
		if p.User.UID > 1<<31-1 || p.User.GID > 1<<31-1 {
			t.Fatalf("user %d:%d accepted", p.User.UID, p.User.GID)
		}
		for _, m := range res.Spec.Mounts {
			if slices.Contains(strings.Split(m.Source, "/"), "..") || slices.Contains(strings.Split(m.Destination, "/"), "..") {
				t.Fatalf("mount %s -> %s accepted", m.Source, m.Destination)
			}
		}
		if c := p.Capabilities; c != nil && len(c.Inheritable) > 0 &&
			len(cfg.GetLinux().GetSecurityContext().GetCapabilities().GetAddAmbientCapabilities()) == 0 {
			t.Fatalf("inheritable capabilities %v without ambient ones asked for", c.Inheritable)
		}
	})
}

// FuzzValidateMounts checks the mount rules alone: no panic, typed
// refusals, and an accepted host path is absolute without "..".
func FuzzValidateMounts(f *testing.F) {
	dir := f.TempDir()
	if err := os.Symlink("/", filepath.Join(dir, "link")); err != nil {
		f.Fatal(err)
	}
	f.Add("/mnt", dir, "", "", false, false, int32(0))
	f.Add("/mnt/../etc", dir+"/link", "", "", true, true, int32(2))
	f.Add("relative", "/tmp/../etc", "", "", false, true, int32(9))
	f.Add("/img", "", "busybox", "../../etc", true, false, int32(0))
	f.Fuzz(func(t *testing.T, ctrPath, hostPath, image, subPath string, ro, rro bool, prop int32) {
		m := &runtimeapi.Mount{ContainerPath: ctrPath, HostPath: hostPath, Readonly: ro, RecursiveReadOnly: rro,
			Propagation: runtimeapi.MountPropagation(prop), ImageSubPath: subPath}
		if image != "" {
			m.Image = &runtimeapi.ImageSpec{Image: image}
		}
		err := ValidateMounts([]*runtimeapi.Mount{m})
		if err != nil {
			if !typed(err) {
				t.Fatalf("untyped refusal: %v", err)
			}
			return
		}
		if image == "" && (!filepath.IsAbs(hostPath) || slices.Contains(strings.Split(hostPath, "/"), "..")) {
			t.Fatalf("host path %q accepted", hostPath)
		}
		if slices.Contains(strings.Split(subPath, "/"), "..") {
			t.Fatalf("image sub path %q accepted", subPath)
		}
		if _, _, err := userMounts([]*runtimeapi.Mount{m}, map[string]string{ctrPath: "/var/lib/img"}); err != nil && !typed(err) {
			t.Fatalf("untyped refusal from userMounts: %v", err)
		}
	})
}
