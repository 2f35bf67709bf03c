package pod

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/objmeta"
)

// Limits from the kubelet's own DNS validation.
const (
	maxDNSSearches = 32
	maxDNSServers  = 16
	maxNameLen     = 253
)

func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errdefs.ErrInvalidArgument)...)
}

// validName accepts kubernetes-style names (and what crictl users type):
// letters, digits, '.', '_' and '-', starting with a letter or digit.
// Nothing that could be a path separator, a CNI_ARGS separator or a
// control character gets through.
func validName(s string) bool {
	if s == "" || len(s) > maxNameLen || s == "." || s == ".." {
		return false
	}
	for i, r := range s {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || (r != '.' && r != '_' && r != '-')) {
			return false
		}
	}
	return true
}

// validHostname accepts an RFC 1123 host name of at most 64 bytes (the
// kernel's limit for the UTS name), absolute (one trailing dot) or not:
// with setHostnameAsFQDN and no cluster domain the kubelet asks for
// "pod.sub.ns.svc.", as the node e2e suite does.
func validHostname(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

func modeOf(m runtimeapi.NamespaceMode) Mode {
	switch m {
	case runtimeapi.NamespaceMode_POD:
		return ModePod
	case runtimeapi.NamespaceMode_NODE:
		return ModeNode
	case runtimeapi.NamespaceMode_CONTAINER:
		return ModeContainer
	}
	return ""
}

// buildRecord validates a RunPodSandbox request and turns it into the
// pod's record (without id and paths). It has no side effects.
func buildRecord(cfg *config.Config, pc *runtimeapi.PodSandboxConfig, handler string) (*record, error) {
	if pc == nil {
		return nil, invalid("config is required")
	}
	md := pc.GetMetadata()
	if md == nil {
		return nil, invalid("config.metadata is required")
	}
	if !validName(md.GetName()) {
		return nil, invalid("config.metadata.name %q must be a non-empty name of letters, digits, '.', '_' or '-'", md.GetName())
	}
	if !validName(md.GetNamespace()) {
		return nil, invalid("config.metadata.namespace %q must be a non-empty name of letters, digits, '.', '_' or '-'", md.GetNamespace())
	}
	if md.GetUid() != "" && !validName(md.GetUid()) {
		return nil, invalid("config.metadata.uid %q may hold only letters, digits, '.', '_' or '-'", md.GetUid())
	}
	name, h, err := cfg.Handler(handler)
	if err != nil {
		return nil, invalid("runtime_handler: %v", err)
	}
	if err := objmeta.Check(pc.GetLabels(), pc.GetAnnotations(), cfg.Berth.API.MaxMetadataSize); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := objmeta.CheckBehaviour(pc.GetAnnotations(), name, h.AllowedAnnotations); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	rec := &record{
		Version:        recordVersion,
		Metadata:       Metadata{Name: md.GetName(), Namespace: md.GetNamespace(), UID: md.GetUid(), Attempt: md.GetAttempt()},
		RuntimeHandler: name,
		Labels:         pc.GetLabels(),
		Annotations:    pc.GetAnnotations(),
	}
	linux := pc.GetLinux()
	if err := setNamespaces(rec, linux.GetSecurityContext().GetNamespaceOptions()); err != nil {
		return nil, err
	}
	rec.Privileged = linux.GetSecurityContext().GetPrivileged()
	if sc := linux.GetSecurityContext(); sc.GetRunAsGroup() != nil && sc.GetRunAsUser() == nil {
		// The CRI allows a group only with a user (the sandbox context
		// has no run_as_username): a group alone has no user to go with.
		return nil, invalid("config.linux.security_context.run_as_group is set without run_as_user")
	}
	if err := setHostname(rec, pc.GetHostname()); err != nil {
		return nil, err
	}
	if rec.DNS, err = dnsOf(pc.GetDnsConfig()); err != nil {
		return nil, err
	}
	if rec.PortMappings, err = portMappings(pc.GetPortMappings()); err != nil {
		return nil, err
	}
	ownNet, ownIPC := rec.Namespaces.Network == ModePod, rec.Namespaces.IPC == ModePod
	if rec.Sysctls, err = podSysctls(cfg.Berth.Runtime.DefaultSysctls, linux.GetSysctls(), ownNet, ownIPC); err != nil {
		return nil, err
	}
	if rec.CgroupParent, err = cgroupParent(cfg.Berth.Runtime.CgroupManager, linux.GetCgroupParent()); err != nil {
		return nil, err
	}
	if ld := pc.GetLogDirectory(); ld != "" {
		if !filepath.IsAbs(ld) || hasDotDot(ld) || strings.ContainsAny(ld, "\x00\n") {
			return nil, invalid("config.log_directory %q must be a clean absolute path", ld)
		}
		rec.LogDirectory = filepath.Clean(ld)
	}
	if rec.Namespaces.IPC == ModePod {
		if rec.ShmSize, err = config.ParseSize(cfg.Berth.Runtime.ShmSize); err != nil {
			return nil, fmt.Errorf("berth.runtime.shm_size: %w", err)
		}
	}
	return rec, nil
}

func setNamespaces(rec *record, opts *runtimeapi.NamespaceOption) error {
	rec.Namespaces = Namespaces{
		Network: modeOf(opts.GetNetwork()),
		PID:     modeOf(opts.GetPid()),
		IPC:     modeOf(opts.GetIpc()),
	}
	if m := rec.Namespaces.Network; m != ModePod && m != ModeNode {
		return invalid("linux.security_context.namespace_options.network %s: a pod's network namespace is POD or NODE", opts.GetNetwork())
	}
	if m := rec.Namespaces.IPC; m != ModePod && m != ModeNode {
		return invalid("linux.security_context.namespace_options.ipc %s: a pod's IPC namespace is POD or NODE", opts.GetIpc())
	}
	if rec.Namespaces.PID == "" {
		return invalid("linux.security_context.namespace_options.pid %s: TARGET is only valid for a container", opts.GetPid())
	}
	return nil
}

// setHostname picks the pod's host name. A pod on the host network
// shares the host's UTS namespace (as the kubelet expects), so its name
// is the node's.
func setHostname(rec *record, h string) error {
	if rec.Namespaces.Network == ModeNode {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("read host name: %w", err)
		}
		rec.Hostname = host
		return nil
	}
	if h == "" {
		h = rec.Metadata.Name
		if len(h) > 63 {
			h = h[:63]
		}
		h = strings.Trim(strings.ReplaceAll(h, "_", "-"), "-.")
	}
	if !validHostname(h) {
		return invalid("config.hostname %q is not a valid host name", h)
	}
	rec.Hostname = h
	return nil
}

func dnsOf(d *runtimeapi.DNSConfig) (*DNS, error) {
	if d == nil || len(d.GetServers())+len(d.GetSearches())+len(d.GetOptions()) == 0 {
		return nil, nil // the host's resolv.conf
	}
	if len(d.GetServers()) > maxDNSServers {
		return nil, invalid("config.dns_config.servers: more than %d", maxDNSServers)
	}
	if len(d.GetSearches()) > maxDNSSearches {
		return nil, invalid("config.dns_config.searches: more than %d", maxDNSSearches)
	}
	for i, s := range d.GetServers() {
		if net.ParseIP(s) == nil {
			return nil, invalid("config.dns_config.servers[%d] %q is not an IP address", i, s)
		}
	}
	for i, s := range d.GetSearches() {
		if !plainWord(s, maxNameLen) {
			return nil, invalid("config.dns_config.searches[%d] %q must be one word without spaces or control characters", i, s)
		}
	}
	for i, s := range d.GetOptions() {
		if !plainWord(s, 256) {
			return nil, invalid("config.dns_config.options[%d] %q must be one word without spaces or control characters", i, s)
		}
	}
	return &DNS{Servers: d.GetServers(), Searches: d.GetSearches(), Options: d.GetOptions()}, nil
}

// plainWord: printable ASCII without spaces, '#' or ';' (comment starts
// in resolv.conf), so one entry can never become two lines or options.
func plainWord(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r >= 0x7f || r == '#' || r == ';' {
			return false
		}
	}
	return true
}

func portMappings(in []*runtimeapi.PortMapping) ([]network.PortMapping, error) {
	var out []network.PortMapping
	for i, pm := range in {
		if pm == nil {
			return nil, invalid("config.port_mappings[%d] is empty", i)
		}
		proto := ""
		switch pm.GetProtocol() {
		case runtimeapi.Protocol_TCP:
			proto = "tcp"
		case runtimeapi.Protocol_UDP:
			proto = "udp"
		case runtimeapi.Protocol_SCTP:
			proto = "sctp"
		default:
			return nil, invalid("config.port_mappings[%d].protocol %d is unknown", i, pm.GetProtocol())
		}
		out = append(out, network.PortMapping{
			HostPort: pm.GetHostPort(), ContainerPort: pm.GetContainerPort(),
			Protocol: proto, HostIP: pm.GetHostIp(),
		})
	}
	if err := network.ValidatePortMappings(out); err != nil {
		return nil, fmt.Errorf("config.%w", err)
	}
	return out, nil
}

// hasDotDot reports a ".." path component, the way out of a directory.
func hasDotDot(p string) bool {
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return true
		}
	}
	return false
}
