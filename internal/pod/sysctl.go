package pod

import (
	"fmt"
	"strings"

	"github.com/berth-cri/berth/internal/errdefs"
)

// maxSysctlLen bounds keys and values; real ones are far shorter.
const maxSysctlLen = 256

// ipcSysctls and ipcPrefixes are the IPC-namespaced sysctls the kubelet
// knows (k8s.io/component-helpers/node/util/sysctl). Every net.* sysctl
// is network-namespaced. The Kubernetes "safe" set is a subset of these
// two groups; the kubelet gates the unsafe rest, berth only makes sure a
// sysctl cannot reach outside the pod's own namespaces.
var (
	ipcSysctls  = []string{"kernel.sem"}
	ipcPrefixes = []string{"kernel.shm", "kernel.msg", "fs.mqueue."}
)

// sysctlNamespace says which namespace kind a sysctl belongs to: "net",
// "ipc" or "" for one that is not namespaced (and so never allowed).
func sysctlNamespace(key string) string {
	if strings.HasPrefix(key, "net.") {
		return "net"
	}
	for _, k := range ipcSysctls {
		if key == k {
			return "ipc"
		}
	}
	for _, p := range ipcPrefixes {
		if strings.HasPrefix(key, p) {
			return "ipc"
		}
	}
	return ""
}

// validateSysctl checks one sysctl for a pod whose network / IPC
// namespaces are its own (ownNet / ownIPC). Keys must be dotted names of
// plain characters; values are plain words, numbers and spaces. That
// rejects '+', '=', newlines, '/' and NUL everywhere, the CVE-2022-0811
// class where a value smuggled a second sysctl such as
// kernel.core_pattern into a host-wide write.
func validateSysctl(field, key, value string, ownNet, ownIPC bool) error {
	if err := validSysctlKey(key); err != nil {
		return fmt.Errorf("%s: key %q %v: %w", field, key, err, errdefs.ErrInvalidArgument)
	}
	if err := validSysctlValue(value); err != nil {
		return fmt.Errorf("%s: value of %s %v: %w", field, key, err, errdefs.ErrInvalidArgument)
	}
	switch sysctlNamespace(key) {
	case "net":
		if !ownNet {
			return fmt.Errorf("%s: %s would change the host: the pod uses the host network: %w", field, key, errdefs.ErrInvalidArgument)
		}
	case "ipc":
		if !ownIPC {
			return fmt.Errorf("%s: %s would change the host: the pod uses the host IPC namespace: %w", field, key, errdefs.ErrInvalidArgument)
		}
	default:
		return fmt.Errorf("%s: %s is not a namespaced sysctl (only net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.* are): %w", field, key, errdefs.ErrInvalidArgument)
	}
	return nil
}

func validSysctlKey(key string) error {
	if key == "" || len(key) > maxSysctlLen {
		return fmt.Errorf("has a bad length")
	}
	for _, part := range strings.Split(key, ".") {
		if part == "" {
			return fmt.Errorf("has an empty component")
		}
		for _, r := range part {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
				return fmt.Errorf("contains %q", r)
			}
		}
	}
	return nil
}

func validSysctlValue(v string) error {
	if v == "" || len(v) > maxSysctlLen {
		return fmt.Errorf("has a bad length")
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == ' ' || r == '\t' || r == '_' || r == '-' || r == '.' || r == ':' || r == ',') {
			return fmt.Errorf("contains %q", r)
		}
	}
	return nil
}

// podSysctls merges the configured default_sysctls (those that apply to
// this pod's namespaces) under the pod's own, validating both.
func podSysctls(defaults []string, requested map[string]string, ownNet, ownIPC bool) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range defaults {
		k, v, _ := strings.Cut(kv, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		ns := sysctlNamespace(k)
		if (ns == "net" && !ownNet) || (ns == "ipc" && !ownIPC) {
			continue // a default meant for pods with their own namespace
		}
		if err := validateSysctl("berth.runtime.default_sysctls", k, v, ownNet, ownIPC); err != nil {
			return nil, err
		}
		out[k] = v
	}
	for k, v := range requested {
		if err := validateSysctl("linux.sysctls", k, v, ownNet, ownIPC); err != nil {
			return nil, err
		}
		out[k] = v
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}
