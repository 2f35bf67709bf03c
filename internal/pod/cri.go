package pod

import runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

// criMetadata is the pod metadata as the CRI carries it.
func (sb *Sandbox) criMetadata() *runtimeapi.PodSandboxMetadata {
	return &runtimeapi.PodSandboxMetadata{
		Name: sb.Metadata.Name, Namespace: sb.Metadata.Namespace,
		Uid: sb.Metadata.UID, Attempt: sb.Metadata.Attempt,
	}
}

// criState maps berth's pod state to the CRI's.
func criState(st State) runtimeapi.PodSandboxState {
	if st == StateReady {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

func criNamespaceMode(m Mode) runtimeapi.NamespaceMode {
	switch m {
	case ModeNode:
		return runtimeapi.NamespaceMode_NODE
	case ModeContainer:
		return runtimeapi.NamespaceMode_CONTAINER
	}
	return runtimeapi.NamespaceMode_POD
}

// CRIStatus is the pod's CRI status, as PodSandboxStatus and the pod
// events of GetContainerEvents report it.
func (sb *Sandbox) CRIStatus() *runtimeapi.PodSandboxStatus {
	st := &runtimeapi.PodSandboxStatus{
		Id:        sb.ID,
		Metadata:  sb.criMetadata(),
		State:     criState(sb.State),
		CreatedAt: sb.CreatedAt.UnixNano(),
		Network:   &runtimeapi.PodSandboxNetworkStatus{},
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{Options: &runtimeapi.NamespaceOption{
			Network:       criNamespaceMode(sb.Namespaces.Network),
			Pid:           criNamespaceMode(sb.Namespaces.PID),
			Ipc:           criNamespaceMode(sb.Namespaces.IPC),
			UsernsOptions: criUserNS(sb.IDMappings),
		}}},
		Labels:         sb.Labels,
		Annotations:    sb.Annotations,
		RuntimeHandler: sb.RuntimeHandler,
	}
	if len(sb.IPs) > 0 {
		st.Network.Ip = sb.IPs[0]
		for _, ip := range sb.IPs[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	return st
}

// CRISandbox is the pod as ListPodSandbox reports it.
func (sb *Sandbox) CRISandbox() *runtimeapi.PodSandbox {
	return &runtimeapi.PodSandbox{
		Id:             sb.ID,
		Metadata:       sb.criMetadata(),
		State:          criState(sb.State),
		CreatedAt:      sb.CreatedAt.UnixNano(),
		Labels:         sb.Labels,
		Annotations:    sb.Annotations,
		RuntimeHandler: sb.RuntimeHandler,
	}
}
