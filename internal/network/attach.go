package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"go.opentelemetry.io/otel/attribute"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/tracing"
)

// IfName is the pod's interface name, as every CRI runtime uses.
const IfName = "eth0"

// PortMapping is one hostPort, passed to the portmap plugin through the
// portMappings capability.
type PortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"` // tcp, udp or sctp
	HostIP        string `json:"hostIP,omitempty"`
}

// Attachment names a pod's network attachment.
type Attachment struct {
	PodID        string
	Name         string
	Namespace    string
	UID          string
	NetNS        string
	PortMappings []PortMapping
	CgroupParent string
}

// Result is what a successful Setup gives the pod.
type Result struct {
	// Network is the CNI network name, recorded so Teardown can find the
	// cached config of this very ADD.
	Network string
	// IPs are the pod's addresses, the primary first.
	IPs []string
}

// ValidatePortMappings rejects mappings the portmap plugin would turn
// into broken or duplicate rules. Mappings without a host port are not
// sent to CNI at all (the kubelet reports them for information only).
func ValidatePortMappings(pms []PortMapping) error {
	seen := map[string]int{}
	for i, pm := range pms {
		field := fmt.Sprintf("port_mappings[%d]", i)
		if pm.ContainerPort < 1 || pm.ContainerPort > 65535 {
			return fmt.Errorf("%s.container_port %d is not a port: %w", field, pm.ContainerPort, errdefs.ErrInvalidArgument)
		}
		if pm.HostPort < 0 || pm.HostPort > 65535 {
			return fmt.Errorf("%s.host_port %d is not a port: %w", field, pm.HostPort, errdefs.ErrInvalidArgument)
		}
		switch pm.Protocol {
		case "tcp", "udp", "sctp":
		default:
			return fmt.Errorf("%s.protocol %q is not tcp, udp or sctp: %w", field, pm.Protocol, errdefs.ErrInvalidArgument)
		}
		if pm.HostIP != "" && net.ParseIP(pm.HostIP) == nil {
			return fmt.Errorf("%s.host_ip %q is not an IP address: %w", field, pm.HostIP, errdefs.ErrInvalidArgument)
		}
		if pm.HostPort == 0 {
			continue
		}
		key := fmt.Sprintf("%s/%d/%s", pm.HostIP, pm.HostPort, pm.Protocol)
		if j, dup := seen[key]; dup {
			return fmt.Errorf("%s duplicates port_mappings[%d] (host port %d/%s): %w", field, j, pm.HostPort, pm.Protocol, errdefs.ErrInvalidArgument)
		}
		seen[key] = i
	}
	return nil
}

// SetPodCIDR records the node's pod CIDR from UpdateRuntimeConfig; it is
// passed to IPAM plugins declaring the ipRanges capability. "" clears it.
func (m *Manager) SetPodCIDR(cidr string) error {
	if cidr != "" {
		for _, c := range strings.Split(cidr, ",") {
			if _, _, err := net.ParseCIDR(strings.TrimSpace(c)); err != nil {
				return fmt.Errorf("pod_cidr %q: %w", cidr, errdefs.ErrInvalidArgument)
			}
		}
	}
	if old := m.podCIDR.Swap(&cidr); old == nil || *old != cidr {
		m.log.Info("pod CIDR updated", "cidr", cidr)
	}
	return nil
}

// PodCIDR returns the pod CIDR last set.
func (m *Manager) PodCIDR() string {
	if p := m.podCIDR.Load(); p != nil {
		return *p
	}
	return ""
}

func (m *Manager) runtimeConf(a Attachment) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{
		ContainerID: a.PodID,
		NetNS:       a.NetNS,
		IfName:      IfName,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", a.Namespace},
			{"K8S_POD_NAME", a.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", a.PodID},
			{"K8S_POD_UID", a.UID},
		},
		CapabilityArgs: map[string]any{},
	}
	var pms []PortMapping
	for _, pm := range a.PortMappings {
		if pm.HostPort > 0 {
			pms = append(pms, pm)
		}
	}
	if len(pms) > 0 {
		rt.CapabilityArgs["portMappings"] = pms
	}
	if a.CgroupParent != "" {
		rt.CapabilityArgs["cgroupPath"] = a.CgroupParent
	}
	if cidr := m.PodCIDR(); cidr != "" {
		var ranges [][]map[string]string
		for _, c := range strings.Split(cidr, ",") {
			ranges = append(ranges, []map[string]string{{"subnet": strings.TrimSpace(c)}})
		}
		rt.CapabilityArgs["ipRanges"] = ranges
	}
	return rt
}

// Setup attaches the pod to the current network. A failed ADD is undone
// with a DEL before returning, so a failure leaves no veth, IP or rule.
func (m *Manager) Setup(ctx context.Context, a Attachment) (_ *Result, err error) {
	ctx, span := tracing.Start(ctx, "cni ADD", attribute.String("pod.id", a.PodID))
	defer func() { tracing.End(span, err) }()
	st := m.current()
	if st.list == nil {
		return nil, fmt.Errorf("network not ready: %s: %w", st.reason, errdefs.ErrFailedPrecondition)
	}
	rt := m.runtimeConf(a)
	addCtx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
	defer cancel()
	res, err := m.cni.AddNetworkList(addCtx, st.list, rt)
	if err == nil {
		var ips []string
		ips, err = podIPs(res)
		if err == nil {
			return &Result{Network: st.list.Name, IPs: ips}, nil
		}
	}
	// The DEL must run even when ctx was cancelled: it is the cleanup.
	delCtx, cancelDel := context.WithTimeout(context.WithoutCancel(ctx), m.opts.Timeout)
	defer cancelDel()
	if derr := m.cni.DelNetworkList(delCtx, st.list, rt); derr != nil {
		m.log.Warn("undo failed CNI ADD", "pod", a.PodID, "network", st.list.Name, "error", derr)
	}
	return nil, fmt.Errorf("CNI network %q ADD for pod %s: %w", st.list.Name, a.PodID, err)
}

// podIPs takes the addresses of the pod-side interfaces from a result,
// in the plugin's order.
func podIPs(res types.Result) ([]string, error) {
	r, err := current.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("convert CNI result: %w", err)
	}
	var ips []string
	for _, ip := range r.IPs {
		if ip.Interface != nil {
			i := *ip.Interface
			if i < 0 || i >= len(r.Interfaces) || r.Interfaces[i].Sandbox == "" {
				continue
			}
		}
		s := ip.Address.IP.String()
		if !slices.Contains(ips, s) {
			ips = append(ips, s)
		}
	}
	if len(ips) == 0 {
		return nil, errors.New("CNI result has no pod IP")
	}
	return ips, nil
}

// Teardown detaches the pod from network (the name Setup returned). It
// is idempotent: it prefers the config cached at ADD time, a missing
// netns makes plugins only release what they hold, and a network no
// longer known at all is nothing to tear down.
func (m *Manager) Teardown(ctx context.Context, a Attachment, network string) (err error) {
	ctx, span := tracing.Start(ctx, "cni DEL", attribute.String("pod.id", a.PodID))
	defer func() { tracing.End(span, err) }()
	if a.NetNS != "" {
		if _, err := os.Stat(a.NetNS); err != nil {
			a.NetNS = ""
		}
	}
	rt := m.runtimeConf(a)
	list, cachedRT := m.cachedList(network, rt)
	if list == nil {
		st := m.current()
		if st.list == nil || (network != "" && st.list.Name != network) {
			m.log.Warn("CNI network of pod is gone; nothing to tear down", "pod", a.PodID, "network", network)
			return nil
		}
		list = st.list
	}
	if cachedRT != nil {
		// Keep the ADD's capability args (port mappings) but the netns
		// as it is now.
		cachedRT.NetNS = a.NetNS
		rt = cachedRT
	}
	delCtx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
	defer cancel()
	if err := m.cni.DelNetworkList(delCtx, list, rt); err != nil {
		return fmt.Errorf("CNI network %q DEL for pod %s: %w", list.Name, a.PodID, err)
	}
	return nil
}

func (m *Manager) cachedList(network string, rt *libcni.RuntimeConf) (*libcni.NetworkConfigList, *libcni.RuntimeConf) {
	if network == "" {
		return nil, nil
	}
	data, cachedRT, err := m.cni.GetNetworkListCachedConfig(&libcni.NetworkConfigList{Name: network}, rt)
	if err != nil || len(data) == 0 {
		return nil, nil
	}
	list, err := libcni.NetworkConfFromBytes(data)
	if err != nil || len(list.Plugins) == 0 {
		m.log.Warn("unreadable cached CNI config", "pod", rt.ContainerID, "network", network, "error", err)
		return nil, nil
	}
	return list, cachedRT
}
