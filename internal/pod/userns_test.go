package pod

import (
	"errors"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/idmap"
)

func TestUserNamespace(t *testing.T) {
	sub := func() (idmap.Subordinate, error) {
		r := []idmap.Range{{Start: 65536, Size: 1 << 24}}
		return idmap.Subordinate{UIDs: r, GIDs: r}, nil
	}
	own := Namespaces{Network: ModePod, PID: ModeContainer, IPC: ModePod}
	m := func(host, ctr, n uint32) *runtimeapi.IDMapping {
		return &runtimeapi.IDMapping{HostId: host, ContainerId: ctr, Length: n}
	}
	pod := func(uids, gids []*runtimeapi.IDMapping) *runtimeapi.NamespaceOption {
		return &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: uids, Gids: gids}}
	}
	good := []*runtimeapi.IDMapping{m(131072, 0, 65536)}
	mp, err := userNamespace(pod(good, good), own, sub)
	if err != nil || mp == nil || mp.UIDs[0] != (idmap.Mapping{HostID: 131072, Size: 65536}) {
		t.Fatalf("good POD mapping: %+v, %v", mp, err)
	}
	if mp, err := userNamespace(&runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}}, own, sub); mp != nil || err != nil {
		t.Errorf("NODE: %+v, %v", mp, err)
	}
	if mp, err := userNamespace(nil, own, sub); mp != nil || err != nil {
		t.Errorf("unset: %+v, %v", mp, err)
	}
	hostNet := own
	hostNet.Network = ModeNode
	for name, tc := range map[string]struct {
		opts *runtimeapi.NamespaceOption
		ns   Namespaces
		want string
	}{
		"container mode": {&runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}}, own, "mode CONTAINER is not supported"},
		"target mode":    {&runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_TARGET}}, own, "mode TARGET is not supported"},
		"host network":   {pod(good, good), hostNet, "host's network namespace"},
		"two uids":       {pod([]*runtimeapi.IDMapping{m(131072, 0, 10), m(262144, 10, 10)}, good), own, "uids: exactly one mapping"},
		"no gids":        {pod(good, nil), own, "gids: exactly one mapping"},
		"zero length":    {pod([]*runtimeapi.IDMapping{m(131072, 0, 0)}, good), own, "uids[0]: length is 0"},
		"overlap":        {pod([]*runtimeapi.IDMapping{m(131072, 0, 100), m(131100, 100, 10)}, good), own, "host ranges overlap"},
		"beyond 2^32":    {pod(good, []*runtimeapi.IDMapping{m(4294960000, 0, 65536)}), own, "beyond 2^32-1"},
		"subordinate":    {pod([]*runtimeapi.IDMapping{m(0, 0, 65536)}, good), own, "outside the host's subordinate ids"},
		"root unmapped":  {pod([]*runtimeapi.IDMapping{m(131072, 1, 65536)}, good), own, "container id 0 must be mapped"},
	} {
		_, err := userNamespace(tc.opts, tc.ns, sub)
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), usernsField) {
			t.Errorf("%s: got %v, want InvalidArgument naming %s with %q", name, err, usernsField, tc.want)
		}
	}
}
