package main

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// kubeSource is what generate kube reads from the runtime: the pod's
// status and config, and each container's status and config. The configs
// come from the runtime's verbose info and may be nil.
type kubeSource struct {
	pod        *runtimeapi.PodSandboxStatus
	podConfig  *runtimeapi.PodSandboxConfig
	containers []kubeContainer
}

type kubeContainer struct {
	status *runtimeapi.ContainerStatus
	config *runtimeapi.ContainerConfig
}

// kubeletMounts are the container paths the kubelet fills itself.
func kubeletMount(m *runtimeapi.Mount) bool {
	switch m.ContainerPath {
	case "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev/termination-log", "/dev/shm":
		return true
	}
	return strings.HasPrefix(m.HostPath, "/var/lib/kubelet/pods/")
}

// internalKey tells the labels and annotations the kubelet adds itself.
func internalKey(k string) bool {
	return strings.HasPrefix(k, "io.kubernetes.") || strings.HasPrefix(k, "kubernetes.io/config.")
}

// firstMap is the first non-empty map.
func firstMap(maps ...map[string]string) map[string]string {
	for _, m := range maps {
		if len(m) > 0 {
			return m
		}
	}
	return nil
}

func userMap(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if !internalKey(k) {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// kubePod reconstructs a Kubernetes Pod from a CRI pod and its containers.
func kubePod(src kubeSource) *corev1.Pod {
	md := src.pod.GetMetadata()
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        md.GetName(),
			Namespace:   md.GetNamespace(),
			Labels:      userMap(firstMap(src.podConfig.GetLabels(), src.pod.Labels)),
			Annotations: userMap(firstMap(src.podConfig.GetAnnotations(), src.pod.Annotations)),
		},
	}
	spec := &pod.Spec
	pc := src.podConfig
	if h := pc.GetHostname(); h != "" && h != md.GetName() {
		spec.Hostname = h
	}
	if dns := pc.GetDnsConfig(); len(dns.GetServers()) > 0 {
		spec.DNSPolicy = corev1.DNSNone
		cfg := &corev1.PodDNSConfig{Nameservers: dns.Servers, Searches: dns.Searches}
		for _, o := range dns.Options {
			name, value, ok := strings.Cut(o, ":")
			opt := corev1.PodDNSConfigOption{Name: name}
			if ok {
				opt.Value = &value
			}
			cfg.Options = append(cfg.Options, opt)
		}
		spec.DNSConfig = cfg
	}
	ns := pc.GetLinux().GetSecurityContext().GetNamespaceOptions()
	if ns == nil {
		ns = src.pod.GetLinux().GetNamespaces().GetOptions()
	}
	if ns != nil {
		spec.HostNetwork = ns.Network == runtimeapi.NamespaceMode_NODE
		spec.HostPID = ns.Pid == runtimeapi.NamespaceMode_NODE
		spec.HostIPC = ns.Ipc == runtimeapi.NamespaceMode_NODE
		if ns.Pid == runtimeapi.NamespaceMode_POD {
			spec.ShareProcessNamespace = ptr(true)
		}
	}
	spec.SecurityContext = podSecurity(pc.GetLinux())

	volumes := &volumeSet{}
	for _, c := range latestAttempts(src.containers) {
		spec.Containers = append(spec.Containers, kubeContainerSpec(c, volumes))
	}
	spec.Volumes = volumes.list
	if len(spec.Containers) > 0 {
		spec.Containers[0].Ports = kubePorts(pc.GetPortMappings())
	}
	return pod
}

// latestAttempts keeps each container name's newest attempt, in the order
// the containers were created.
func latestAttempts(all []kubeContainer) []kubeContainer {
	byName := map[string]kubeContainer{}
	for _, c := range all {
		name := c.status.GetMetadata().GetName()
		if prev, ok := byName[name]; !ok || c.status.GetMetadata().GetAttempt() >= prev.status.GetMetadata().GetAttempt() {
			byName[name] = c
		}
	}
	out := slices.Collect(maps.Values(byName))
	slices.SortFunc(out, func(a, b kubeContainer) int {
		return cmp.Or(cmp.Compare(a.status.CreatedAt, b.status.CreatedAt), strings.Compare(a.status.GetMetadata().GetName(), b.status.GetMetadata().GetName()))
	})
	return out
}

func kubeContainerSpec(c kubeContainer, volumes *volumeSet) corev1.Container {
	st, cfg := c.status, c.config
	ctr := corev1.Container{
		Name:       st.GetMetadata().GetName(),
		Image:      cmp.Or(st.GetImage().GetUserSpecifiedImage(), cfg.GetImage().GetUserSpecifiedImage(), cfg.GetImage().GetImage(), st.GetImage().GetImage(), st.ImageRef),
		Command:    cfg.GetCommand(),
		Args:       cfg.GetArgs(),
		WorkingDir: cfg.GetWorkingDir(),
		Stdin:      cfg.GetStdin(),
		StdinOnce:  cfg.GetStdinOnce(),
		TTY:        cfg.GetTty(),
	}
	for _, kv := range cfg.GetEnvs() {
		ctr.Env = append(ctr.Env, corev1.EnvVar{Name: kv.Key, Value: string(kv.Value)})
	}
	mounts := cfg.GetMounts()
	if len(mounts) == 0 {
		mounts = st.Mounts
	}
	for _, m := range mounts {
		if kubeletMount(m) || m.HostPath == "" {
			continue
		}
		vm := corev1.VolumeMount{Name: volumes.add(m.HostPath), MountPath: m.ContainerPath, ReadOnly: m.Readonly}
		switch m.Propagation {
		case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			vm.MountPropagation = ptr(corev1.MountPropagationHostToContainer)
		case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			vm.MountPropagation = ptr(corev1.MountPropagationBidirectional)
		}
		ctr.VolumeMounts = append(ctr.VolumeMounts, vm)
	}
	res := cfg.GetLinux().GetResources()
	if res == nil {
		res = st.GetResources().GetLinux()
	}
	ctr.Resources = kubeResources(res)
	ctr.SecurityContext = containerSecurity(cfg.GetLinux().GetSecurityContext())
	return ctr
}

// volumeSet names one hostPath volume per host path.
type volumeSet struct {
	list []corev1.Volume
}

func (v *volumeSet) add(hostPath string) string {
	for _, vol := range v.list {
		if vol.HostPath.Path == hostPath {
			return vol.Name
		}
	}
	name := "vol-" + strconv.Itoa(len(v.list))
	v.list = append(v.list, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostPath}}})
	return name
}

func kubePorts(mappings []*runtimeapi.PortMapping) []corev1.ContainerPort {
	var ports []corev1.ContainerPort
	for _, pm := range mappings {
		p := corev1.ContainerPort{ContainerPort: pm.ContainerPort, HostPort: pm.HostPort, HostIP: pm.HostIp, Protocol: corev1.ProtocolTCP}
		switch pm.Protocol {
		case runtimeapi.Protocol_UDP:
			p.Protocol = corev1.ProtocolUDP
		case runtimeapi.Protocol_SCTP:
			p.Protocol = corev1.ProtocolSCTP
		}
		ports = append(ports, p)
	}
	return ports
}

// kubeResources turns cgroup settings back into requests and limits, the
// inverse of the kubelet's conversion.
func kubeResources(r *runtimeapi.LinuxContainerResources) corev1.ResourceRequirements {
	var req corev1.ResourceRequirements
	if r == nil {
		return req
	}
	limits, requests := corev1.ResourceList{}, corev1.ResourceList{}
	if r.MemoryLimitInBytes > 0 {
		limits[corev1.ResourceMemory] = *resource.NewQuantity(r.MemoryLimitInBytes, resource.BinarySI)
	}
	var cpuLimit int64
	if r.CpuQuota > 0 && r.CpuPeriod > 0 {
		cpuLimit = (r.CpuQuota*1000 + r.CpuPeriod/2) / r.CpuPeriod
		limits[corev1.ResourceCPU] = *resource.NewMilliQuantity(cpuLimit, resource.DecimalSI)
	}
	// The kubelet gives 2 shares to a container without a CPU request.
	if r.CpuShares > 2 {
		milli := (r.CpuShares*1000 + 512) / 1024
		if cpuLimit > 0 && milli > cpuLimit {
			milli = cpuLimit
		}
		requests[corev1.ResourceCPU] = *resource.NewMilliQuantity(milli, resource.DecimalSI)
	}
	for _, h := range r.HugepageLimits {
		if h.Limit == 0 {
			continue
		}
		size := strings.NewReplacer("KB", "Ki", "MB", "Mi", "GB", "Gi").Replace(h.PageSize)
		limits[corev1.ResourceName("hugepages-"+size)] = *resource.NewQuantity(int64(h.Limit), resource.BinarySI)
	}
	if len(limits) > 0 {
		req.Limits = limits
	}
	if len(requests) > 0 {
		req.Requests = requests
	}
	return req
}

func podSecurity(l *runtimeapi.LinuxPodSandboxConfig) *corev1.PodSecurityContext {
	sc := l.GetSecurityContext()
	psc := &corev1.PodSecurityContext{
		SupplementalGroups: sc.GetSupplementalGroups(),
		SELinuxOptions:     seLinux(sc.GetSelinuxOptions()),
		SeccompProfile:     seccomp(sc.GetSeccomp()),
	}
	if u := sc.GetRunAsUser(); u != nil {
		psc.RunAsUser = ptr(u.Value)
	}
	if gid := sc.GetRunAsGroup(); gid != nil {
		psc.RunAsGroup = ptr(gid.Value)
	}
	for _, k := range slices.Sorted(maps.Keys(l.GetSysctls())) {
		psc.Sysctls = append(psc.Sysctls, corev1.Sysctl{Name: k, Value: l.Sysctls[k]})
	}
	if psc.RunAsUser == nil && psc.RunAsGroup == nil && psc.SupplementalGroups == nil && psc.SELinuxOptions == nil &&
		psc.SeccompProfile == nil && psc.Sysctls == nil {
		return nil
	}
	return psc
}

func containerSecurity(sc *runtimeapi.LinuxContainerSecurityContext) *corev1.SecurityContext {
	if sc == nil {
		return nil
	}
	out := &corev1.SecurityContext{
		SELinuxOptions: seLinux(sc.SelinuxOptions),
		SeccompProfile: seccomp(sc.Seccomp),
	}
	if sc.Privileged {
		out.Privileged = ptr(true)
	}
	if sc.ReadonlyRootfs {
		out.ReadOnlyRootFilesystem = ptr(true)
	}
	if sc.NoNewPrivs && !sc.Privileged {
		out.AllowPrivilegeEscalation = ptr(false)
	}
	if sc.RunAsUser != nil {
		out.RunAsUser = ptr(sc.RunAsUser.Value)
	}
	if sc.RunAsGroup != nil {
		out.RunAsGroup = ptr(sc.RunAsGroup.Value)
	}
	if caps := sc.Capabilities; caps != nil && len(caps.AddCapabilities)+len(caps.DropCapabilities) > 0 {
		out.Capabilities = &corev1.Capabilities{}
		for _, c := range caps.AddCapabilities {
			out.Capabilities.Add = append(out.Capabilities.Add, corev1.Capability(strings.TrimPrefix(c, "CAP_")))
		}
		for _, c := range caps.DropCapabilities {
			out.Capabilities.Drop = append(out.Capabilities.Drop, corev1.Capability(strings.TrimPrefix(c, "CAP_")))
		}
	}
	if p := sc.Apparmor; p != nil {
		switch p.ProfileType {
		case runtimeapi.SecurityProfile_RuntimeDefault:
			out.AppArmorProfile = &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeRuntimeDefault}
		case runtimeapi.SecurityProfile_Localhost:
			out.AppArmorProfile = &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeLocalhost, LocalhostProfile: ptr(strings.TrimPrefix(p.LocalhostRef, "localhost/"))}
		}
	}
	if *out == (corev1.SecurityContext{}) {
		return nil
	}
	return out
}

func seLinux(o *runtimeapi.SELinuxOption) *corev1.SELinuxOptions {
	if o == nil || (o.User == "" && o.Role == "" && o.Type == "" && o.Level == "") {
		return nil
	}
	return &corev1.SELinuxOptions{User: o.User, Role: o.Role, Type: o.Type, Level: o.Level}
}

// seccomp maps a CRI seccomp profile; Unconfined, Kubernetes' default
// without SeccompDefault, is left out.
func seccomp(p *runtimeapi.SecurityProfile) *corev1.SeccompProfile {
	switch p.GetProfileType() {
	case runtimeapi.SecurityProfile_RuntimeDefault:
		if p == nil {
			return nil
		}
		return &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
	case runtimeapi.SecurityProfile_Localhost:
		ref := strings.TrimPrefix(p.LocalhostRef, "/var/lib/kubelet/seccomp/")
		return &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: &ref}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// kubeYAMLHeader is the comment generate kube puts above each pod.
func kubeYAMLHeader(podID string) string {
	return fmt.Sprintf("# Generated by berth from pod sandbox %s.\n# Save it and run: kubectl create -f FILE\n", podID)
}
