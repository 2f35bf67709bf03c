package spec

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// maxProfile bounds a seccomp profile file read from the node.
const maxProfile = 8 << 20

// seccompProfile picks the container's seccomp filter, as the CRI
// defines it: an unset profile (and an empty deprecated
// seccomp_profile_path) means unconfined, since the kubelet sends
// RuntimeDefault explicitly when it wants the default; RuntimeDefault is
// moby's profile, or the one the config names; Localhost loads the file
// the kubelet points at. A privileged container ignores any profile, as
// with CRI-O and containerd. The default profile depends on the
// capabilities (some syscalls are allowed only with CAP_SYS_ADMIN and
// friends), so s must have them already.
func seccompProfile(sc *runtimeapi.LinuxContainerSecurityContext, s *specs.Spec, defaultJSON []byte) (*specs.LinuxSeccomp, error) {
	if sc.GetPrivileged() {
		return nil, nil
	}
	kind, ref, err := seccompRequest(sc)
	if err != nil {
		return nil, err
	}
	switch kind {
	case runtimeapi.SecurityProfile_Unconfined:
		return nil, nil
	case runtimeapi.SecurityProfile_Localhost:
		if !filepath.IsAbs(ref) {
			return nil, invalid("seccomp localhost profile %q is not an absolute path", ref)
		}
		data, err := readProfile(ref)
		if err != nil {
			return nil, err
		}
		prof, err := seccomp.LoadProfile(string(data), s)
		if err != nil {
			return nil, fmt.Errorf("seccomp profile %s: %v: %w", ref, err, errdefs.ErrInvalidArgument)
		}
		return prof, nil
	}
	if len(defaultJSON) > 0 {
		prof, err := seccomp.LoadProfile(string(defaultJSON), s)
		if err != nil {
			return nil, fmt.Errorf("configured default seccomp profile: %v: %w", err, errdefs.ErrFailedPrecondition)
		}
		return prof, nil
	}
	prof, err := seccomp.GetDefaultProfile(s)
	if err != nil {
		return nil, fmt.Errorf("default seccomp profile: %w", err)
	}
	return prof, nil
}

// seccompRequest reads the profile asked for: the seccomp field, else
// the deprecated seccomp_profile_path ("runtime/default",
// "docker/default", "unconfined", "localhost/<path>"), else unconfined.
func seccompRequest(sc *runtimeapi.LinuxContainerSecurityContext) (runtimeapi.SecurityProfile_ProfileType, string, error) {
	if p := sc.GetSeccomp(); p != nil {
		return p.GetProfileType(), p.GetLocalhostRef(), nil
	}
	switch path := sc.GetSeccompProfilePath(); {
	case path == "" || path == "unconfined":
		return runtimeapi.SecurityProfile_Unconfined, "", nil
	case path == "runtime/default" || path == "docker/default":
		return runtimeapi.SecurityProfile_RuntimeDefault, "", nil
	case strings.HasPrefix(path, "localhost/"):
		return runtimeapi.SecurityProfile_Localhost, strings.TrimPrefix(path, "localhost/"), nil
	default:
		return 0, "", invalid("seccomp_profile_path %q is not runtime/default, unconfined or localhost/<path>", path)
	}
}

func readProfile(p string) ([]byte, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile %s: %v: %w", p, err, errdefs.ErrInvalidArgument)
	}
	if !st.Mode().IsRegular() || st.Size() > maxProfile {
		return nil, invalid("seccomp profile %s is not a regular file under %d bytes", p, maxProfile)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile %s: %v: %w", p, err, errdefs.ErrInvalidArgument)
	}
	return data, nil
}

// apparmorProfile names the AppArmor profile, or "" for none. As with
// CRI-O and containerd, RuntimeDefault and an unset profile (with an
// empty deprecated apparmor_profile) get the default profile, except
// that a privileged container runs unconfined; Localhost is the named
// profile, which must be loaded on the host (the container manager checks
// that, and loads the default profile when missing). On a host without
// AppArmor every request is skipped (and a localhost one reported), since
// runc would fail to apply any profile there.
func apparmorProfile(sc *runtimeapi.LinuxContainerSecurityContext, h *Host, defaultProfile string, adapted *[]string) (string, error) {
	kind, ref, err := apparmorRequest(sc)
	if err != nil {
		return "", err
	}
	if !h.AppArmor {
		if kind == runtimeapi.SecurityProfile_Localhost {
			*adapted = append(*adapted, "AppArmor is not enabled on this host: localhost profiles are ignored")
		}
		return "", nil
	}
	switch kind {
	case runtimeapi.SecurityProfile_Unconfined:
		return "unconfined", nil
	case runtimeapi.SecurityProfile_Localhost:
		name := strings.TrimPrefix(ref, "localhost/")
		if name == "" || strings.ContainsAny(name, "\x00\n") {
			return "", invalid("apparmor localhost profile %q is not a profile name", ref)
		}
		return name, nil
	}
	if sc.GetPrivileged() {
		return "unconfined", nil
	}
	return defaultProfile, nil
}

// apparmorRequest reads the profile asked for: the apparmor field, else
// the deprecated apparmor_profile ("runtime/default", "unconfined",
// "localhost/<name>"), else RuntimeDefault.
func apparmorRequest(sc *runtimeapi.LinuxContainerSecurityContext) (runtimeapi.SecurityProfile_ProfileType, string, error) {
	if p := sc.GetApparmor(); p != nil {
		return p.GetProfileType(), p.GetLocalhostRef(), nil
	}
	switch name := sc.GetApparmorProfile(); {
	case name == "" || name == "runtime/default":
		return runtimeapi.SecurityProfile_RuntimeDefault, "", nil
	case name == "unconfined":
		return runtimeapi.SecurityProfile_Unconfined, "", nil
	case strings.HasPrefix(name, "localhost/"):
		return runtimeapi.SecurityProfile_Localhost, name, nil
	default:
		return 0, "", invalid("apparmor_profile %q is not runtime/default, unconfined or localhost/<name>", name)
	}
}

// namespaces lists the namespaces of the container: net, ipc and uts are
// the pod's (joined by path; none when the pod uses the host's), pid
// follows the requested mode, mount is always new, cgroup is new on
// cgroup v2 only (where it hides the host's hierarchy).
func namespaces(sc *runtimeapi.LinuxContainerSecurityContext, sb *Sandbox, targetPIDNS string, h *Host) ([]specs.LinuxNamespace, error) {
	ns := []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	opts := sc.GetNamespaceOptions()
	join := func(t specs.LinuxNamespaceType, mode runtimeapi.NamespaceMode, p string) {
		if mode == runtimeapi.NamespaceMode_NODE || p == "" {
			return
		}
		ns = append(ns, specs.LinuxNamespace{Type: t, Path: p})
	}
	join(specs.NetworkNamespace, opts.GetNetwork(), sb.NetNS)
	join(specs.IPCNamespace, opts.GetIpc(), sb.IPCNS)
	join(specs.UTSNamespace, opts.GetNetwork(), sb.UTSNS)
	switch opts.GetPid() {
	case runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_CONTAINER:
		// POD is also the zero value, sent by clients that set nothing;
		// a pod that shares no PID namespace gives each container its own.
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: sb.PIDNS})
		if opts.GetPid() == runtimeapi.NamespaceMode_CONTAINER {
			ns[len(ns)-1].Path = ""
		}
	case runtimeapi.NamespaceMode_NODE:
	case runtimeapi.NamespaceMode_TARGET:
		if targetPIDNS == "" {
			return nil, invalid("pid namespace mode TARGET needs a running target container (target_id %q)", opts.GetTargetId())
		}
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: targetPIDNS})
	default:
		return nil, invalid("unknown pid namespace mode %v", opts.GetPid())
	}
	userNS, err := userNamespace(opts.GetUsernsOptions(), sb)
	if err != nil {
		return nil, err
	}
	ns = append(ns, userNS...)
	if h.CgroupV2 {
		ns = append(ns, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	return ns, nil
}
