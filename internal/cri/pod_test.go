package cri

import (
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/pod"
)

func TestSandboxStatusConversion(t *testing.T) {
	created := time.Unix(100, 5)
	sb := &pod.Sandbox{
		ID:         "abc",
		Metadata:   pod.Metadata{Name: "n", Namespace: "ns", UID: "u", Attempt: 2},
		State:      pod.StateReady,
		CreatedAt:  created,
		Namespaces: pod.Namespaces{Network: pod.ModePod, PID: pod.ModeContainer, IPC: pod.ModeNode},
		IPs:        []string{"10.0.0.2", "fd00::2"},
		Labels:     map[string]string{"a": "b"},
	}
	st := sb.CRIStatus()
	if st.GetNetwork().GetIp() != "10.0.0.2" || len(st.GetNetwork().GetAdditionalIps()) != 1 || st.GetNetwork().GetAdditionalIps()[0].GetIp() != "fd00::2" {
		t.Errorf("network %v", st.GetNetwork())
	}
	o := st.GetLinux().GetNamespaces().GetOptions()
	if o.GetNetwork() != runtimeapi.NamespaceMode_POD || o.GetPid() != runtimeapi.NamespaceMode_CONTAINER || o.GetIpc() != runtimeapi.NamespaceMode_NODE {
		t.Errorf("namespaces %v", o)
	}
	if st.GetState() != runtimeapi.PodSandboxState_SANDBOX_READY || st.GetCreatedAt() != created.UnixNano() || st.GetMetadata().GetAttempt() != 2 {
		t.Errorf("status %v", st)
	}
	sb.State = pod.StateNotReady
	if sb.CRIStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Error("not ready")
	}
}
