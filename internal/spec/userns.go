package spec

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/idmap"
)

const containerUsernsField = "linux.security_context.namespace_options.userns_options"

// userNamespace is the user namespace a container joins: the pod's when
// it has one (a container left unset inherits it), none otherwise. The
// container's own option may only agree with the pod: a user namespace
// is per pod.
func userNamespace(u *runtimeapi.UserNamespace, sb *Sandbox) ([]specs.LinuxNamespace, error) {
	switch u.GetMode() {
	case runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_NODE:
	case runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_TARGET:
		return nil, invalid("%s.mode %s is not supported: a user namespace is per pod (POD) or the host's (NODE)", containerUsernsField, u.GetMode())
	default:
		return nil, invalid("%s.mode %d is unknown", containerUsernsField, u.GetMode())
	}
	if sb.UserNS == "" {
		if u != nil && u.GetMode() == runtimeapi.NamespaceMode_POD {
			return nil, invalid("%s.mode POD: the pod was created in the host's user namespace", containerUsernsField)
		}
		return nil, nil
	}
	if sb.IDMappings == nil {
		return nil, invalid("pod user namespace %s has no mappings", sb.UserNS)
	}
	if u != nil && u.GetMode() == runtimeapi.NamespaceMode_NODE {
		return nil, invalid("%s.mode NODE: the pod runs in its own user namespace, and so do its containers", containerUsernsField)
	}
	return []specs.LinuxNamespace{{Type: specs.UserNamespace, Path: sb.UserNS}}, nil
}

// mountMappings checks the id mappings of the request's mounts. The
// kubelet gives every mount of a pod with its own user namespace that
// namespace's mappings; berth idmaps every bind mount of such a pod with
// the pod's namespace, so those are the only mappings a mount may ask
// for, and a pod in the host's user namespace has no idmapped mounts.
func mountMappings(mounts []*runtimeapi.Mount, sb *Sandbox) error {
	for _, m := range mounts {
		if len(m.GetUidMappings())+len(m.GetGidMappings()) == 0 {
			continue
		}
		if sb.UserNS == "" || sb.IDMappings == nil {
			return invalid("mount %s: uid_mappings/gid_mappings need a pod with its own user namespace", m.GetContainerPath())
		}
		if !sameMappings(m.GetUidMappings(), sb.IDMappings.UIDs) || !sameMappings(m.GetGidMappings(), sb.IDMappings.GIDs) {
			return invalid("mount %s: uid_mappings/gid_mappings differ from the pod's user namespace mappings, the only ones berth idmaps mounts with", m.GetContainerPath())
		}
	}
	return nil
}

func sameMappings(req []*runtimeapi.IDMapping, pod []idmap.Mapping) bool {
	if len(req) != len(pod) {
		return false
	}
	for i, m := range req {
		if m.GetContainerId() != pod[i].ContainerID || m.GetHostId() != pod[i].HostID || m.GetLength() != pod[i].Size {
			return false
		}
	}
	return true
}
