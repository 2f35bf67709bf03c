package pod

import (
	"errors"
	"strings"
	"testing"

	"github.com/berth-cri/berth/internal/errdefs"
)

// FuzzSysctl feeds pod sysctls to their validation. It must never
// panic; a refusal is InvalidArgument; an accepted sysctl can smuggle
// nothing (CVE-2022-0811: no '=', '+', '/', newline or NUL) and is one
// the pod's own namespaces hold.
func FuzzSysctl(f *testing.F) {
	f.Add("net.ipv4.ip_forward", "1", true, true)
	f.Add("kernel.shm_rmid_forced", "1+kernel.core_pattern=|/bin/sh", true, true)
	f.Add("kernel.shm_rmid_forced=1+kernel.core_pattern", "x", true, true)
	f.Add("net/ipv4/ip_forward", "1\n", false, true)
	f.Add("kernel.core_pattern", "core", true, true)
	f.Add("fs.mqueue.msg_max", "10", true, false)
	f.Add("net.ipv4.ping_group_range", "0 2147483647", true, true)
	f.Fuzz(func(t *testing.T, key, value string, ownNet, ownIPC bool) {
		err := validateSysctl("sysctls", key, value, ownNet, ownIPC)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("untyped refusal: %v", err)
			}
			return
		}
		if strings.ContainsAny(key+value, "=+/\n\r\x00") {
			t.Fatalf("%q=%q accepted", key, value)
		}
		switch sysctlNamespace(key) {
		case "net":
			if !ownNet {
				t.Fatalf("%s accepted on the host network", key)
			}
		case "ipc":
			if !ownIPC {
				t.Fatalf("%s accepted in the host IPC namespace", key)
			}
		default:
			t.Fatalf("%s accepted but not namespaced", key)
		}
	})
}
