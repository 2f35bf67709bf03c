package spec

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/idmap"
)

func TestUserNamespace(t *testing.T) {
	withMode := func(m runtimeapi.NamespaceMode) *runtimeapi.ContainerConfig {
		cfg := &runtimeapi.ContainerConfig{}
		secCtx(cfg).NamespaceOptions = &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: m}}
		return cfg
	}
	inPod := func(cfg *runtimeapi.ContainerConfig) *Input {
		in := input(t, cfg)
		in.Sandbox.UserNS = "/run/berth/ns/user/pod1"
		mp := []idmap.Mapping{{HostID: 131072, Size: 65536}}
		in.Sandbox.IDMappings = &idmap.Mappings{UIDs: mp, GIDs: mp}
		return in
	}
	for _, cfg := range []*runtimeapi.ContainerConfig{{}, withMode(runtimeapi.NamespaceMode_POD)} {
		s := gen(t, inPod(cfg)).Spec
		joined := false
		for _, n := range s.Linux.Namespaces {
			joined = joined || (n.Type == specs.UserNamespace && n.Path == "/run/berth/ns/user/pod1")
		}
		want := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 131072, Size: 65536}}
		if !joined || len(s.Linux.UIDMappings) != 1 || s.Linux.UIDMappings[0] != want[0] || len(s.Linux.GIDMappings) != 1 || s.Linux.GIDMappings[0] != want[0] {
			t.Errorf("namespaces %v, uid mappings %v, gid mappings %v", s.Linux.Namespaces, s.Linux.UIDMappings, s.Linux.GIDMappings)
		}
	}
	s := gen(t, input(t, withMode(runtimeapi.NamespaceMode_NODE))).Spec
	if s.Linux.UIDMappings != nil {
		t.Errorf("host user namespace has mappings %v", s.Linux.UIDMappings)
	}
	for name, in := range map[string]*Input{
		"POD in a host-userns pod": input(t, withMode(runtimeapi.NamespaceMode_POD)),
		"NODE in a userns pod":     inPod(withMode(runtimeapi.NamespaceMode_NODE)),
		"CONTAINER":                inPod(withMode(runtimeapi.NamespaceMode_CONTAINER)),
		"TARGET":                   inPod(withMode(runtimeapi.NamespaceMode_TARGET)),
	} {
		_, err := Generate(in)
		if err == nil || !strings.Contains(err.Error(), containerUsernsField) {
			t.Errorf("%s: %v, want an error naming %s", name, err, containerUsernsField)
		}
		genErr(t, in, errdefs.ErrInvalidArgument)
	}
}

// The kubelet sends each mount of a userns pod the pod's mappings.
func TestMountMappings(t *testing.T) {
	podMap := []*runtimeapi.IDMapping{{HostId: 131072, ContainerId: 0, Length: 65536}}
	mount := func(uids []*runtimeapi.IDMapping) *runtimeapi.ContainerConfig {
		return &runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{{ContainerPath: "/v", HostPath: t.TempDir(), UidMappings: uids, GidMappings: podMap}}}
	}
	inPod := func(cfg *runtimeapi.ContainerConfig) *Input {
		in := input(t, cfg)
		in.Sandbox.UserNS = "/run/berth/ns/user/pod1"
		mp := []idmap.Mapping{{HostID: 131072, Size: 65536}}
		in.Sandbox.IDMappings = &idmap.Mappings{UIDs: mp, GIDs: mp}
		return in
	}
	gen(t, inPod(mount(podMap)))
	genErr(t, inPod(mount([]*runtimeapi.IDMapping{{HostId: 262144, Length: 65536}})), errdefs.ErrInvalidArgument)
	genErr(t, input(t, mount(podMap)), errdefs.ErrInvalidArgument)
}
