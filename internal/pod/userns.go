package pod

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/idmap"
)

const usernsField = "linux.security_context.namespace_options.userns_options"

// userNamespace validates the pod's userns_options: NODE (or none) is
// the host's user namespace; POD a new one for the pod with exactly one
// uid and one gid mapping that map container id 0 and stay inside the
// host's subordinate ids (see package idmap). The pod's namespaces are
// then owned by it, which the host's network, IPC or PID namespace
// cannot be.
func userNamespace(opts *runtimeapi.NamespaceOption, ns Namespaces, sub func() (idmap.Subordinate, error)) (*idmap.Mappings, error) {
	u := opts.GetUsernsOptions()
	if u == nil {
		return nil, nil
	}
	switch u.GetMode() {
	case runtimeapi.NamespaceMode_NODE:
		if len(u.GetUids())+len(u.GetGids()) > 0 {
			return nil, invalid("%s: mode NODE (the host's user namespace) takes no uids or gids", usernsField)
		}
		return nil, nil
	case runtimeapi.NamespaceMode_POD:
	case runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_TARGET:
		return nil, invalid("%s.mode %s is not supported: a user namespace is per pod (POD) or the host's (NODE)", usernsField, u.GetMode())
	default:
		return nil, invalid("%s.mode %d is unknown", usernsField, u.GetMode())
	}
	for kind, m := range map[string]Mode{"network": ns.Network, "ipc": ns.IPC, "pid": ns.PID} {
		if m == ModeNode {
			return nil, invalid("%s.mode POD cannot be combined with the host's %s namespace (namespace_options.%s NODE)", usernsField, kind, kind)
		}
	}
	subIDs, err := sub()
	if err != nil {
		return nil, err
	}
	mp := &idmap.Mappings{UIDs: mappings(u.GetUids()), GIDs: mappings(u.GetGids())}
	if err := idmap.Validate(usernsField+".uids", mp.UIDs, subIDs.UIDs); err != nil {
		return nil, err
	}
	if err := idmap.Validate(usernsField+".gids", mp.GIDs, subIDs.GIDs); err != nil {
		return nil, err
	}
	return mp, nil
}

func mappings(in []*runtimeapi.IDMapping) []idmap.Mapping {
	out := make([]idmap.Mapping, 0, len(in))
	for _, m := range in {
		out = append(out, idmap.Mapping{ContainerID: m.GetContainerId(), HostID: m.GetHostId(), Size: m.GetLength()})
	}
	return out
}

// criUserNS is the pod's user namespace option as the CRI reports it.
func criUserNS(mp *idmap.Mappings) *runtimeapi.UserNamespace {
	if mp == nil {
		return &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}
	}
	u := &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}
	for _, m := range mp.UIDs {
		u.Uids = append(u.Uids, &runtimeapi.IDMapping{HostId: m.HostID, ContainerId: m.ContainerID, Length: m.Size})
	}
	for _, m := range mp.GIDs {
		u.Gids = append(u.Gids, &runtimeapi.IDMapping{HostId: m.HostID, ContainerId: m.ContainerID, Length: m.Size})
	}
	return u
}
