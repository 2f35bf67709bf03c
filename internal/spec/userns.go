package spec

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
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
