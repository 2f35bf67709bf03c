package spec

import (
	"fmt"
	"slices"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// capNames are the Linux capabilities by number (linux/capability.h).
// Index i is capability i, so a CapBnd mask maps onto it directly.
var capNames = [...]string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
	"CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
	"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
	"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// normalizeCap turns "net_admin", "NET_ADMIN" or "CAP_NET_ADMIN" into
// "CAP_NET_ADMIN" and rejects names the kernel does not know; "ALL" is
// returned as is.
func normalizeCap(name string) (string, error) {
	n := strings.ToUpper(strings.TrimSpace(name))
	if n == "ALL" {
		return n, nil
	}
	if !strings.HasPrefix(n, "CAP_") {
		n = "CAP_" + n
	}
	if !slices.Contains(capNames[:], n) {
		return "", fmt.Errorf("unknown capability %q: %w", name, errdefs.ErrInvalidArgument)
	}
	return n, nil
}

// allCaps returns every capability the host can grant, in number order.
func allCaps(h *Host) []string {
	out := make([]string, 0, len(capNames))
	for _, c := range capNames {
		if h.HasCap(c) {
			out = append(out, c)
		}
	}
	return out
}

// capabilities computes the container's capability sets. The order of
// operations follows CRI-O so that the kubelet's add/drop lists mean the
// same thing: "ALL" in add grants everything first, "ALL" in drop clears
// everything first, then the named adds and drops apply. Capabilities the
// host's bounding set lacks are left out (and reported in adapted), since
// runc would fail to grant them. The inheritable set stays empty unless
// ambient capabilities are asked for, which need it (CVE-2022-27652).
func capabilities(defaults []string, sc *runtimeapi.LinuxContainerSecurityContext, h *Host, adapted *[]string) (*capSets, error) {
	set := map[string]bool{}
	if sc.GetPrivileged() {
		for _, c := range allCaps(h) {
			set[c] = true
		}
		if len(allCaps(h)) < len(capNames) {
			*adapted = append(*adapted, "privileged container gets the capabilities in the host's bounding set only")
		}
		return finishCaps(set, nil, h, adapted)
	}
	for _, d := range defaults {
		c, err := normalizeCap(d)
		if err != nil {
			return nil, fmt.Errorf("default capability: %w", err)
		}
		set[c] = true
	}
	caps := sc.GetCapabilities()
	var add, drop, ambient []string
	for _, a := range caps.GetAddCapabilities() {
		c, err := normalizeCap(a)
		if err != nil {
			return nil, fmt.Errorf("add capability: %w", err)
		}
		add = append(add, c)
	}
	for _, d := range caps.GetDropCapabilities() {
		c, err := normalizeCap(d)
		if err != nil {
			return nil, fmt.Errorf("drop capability: %w", err)
		}
		drop = append(drop, c)
	}
	for _, a := range caps.GetAddAmbientCapabilities() {
		c, err := normalizeCap(a)
		if err != nil || c == "ALL" {
			return nil, fmt.Errorf("ambient capability %q: %w", a, errdefs.ErrInvalidArgument)
		}
		ambient = append(ambient, c)
	}
	if slices.Contains(add, "ALL") {
		for _, c := range capNames {
			set[c] = true
		}
	}
	if slices.Contains(drop, "ALL") {
		clear(set)
	}
	for _, c := range add {
		if c != "ALL" {
			set[c] = true
		}
	}
	for _, c := range drop {
		if c != "ALL" {
			delete(set, c)
		}
	}
	for _, c := range ambient {
		set[c] = true
	}
	return finishCaps(set, ambient, h, adapted)
}

type capSets struct {
	bounding, ambient []string
}

func finishCaps(set map[string]bool, ambient []string, h *Host, adapted *[]string) (*capSets, error) {
	out := &capSets{bounding: []string{}}
	var missing []string
	for _, c := range capNames {
		if !set[c] {
			continue
		}
		if !h.HasCap(c) {
			missing = append(missing, c)
			continue
		}
		out.bounding = append(out.bounding, c)
	}
	if len(missing) > 0 {
		*adapted = append(*adapted, "capabilities not in the host's bounding set left out: "+strings.Join(missing, ","))
	}
	for _, c := range ambient {
		if !h.HasCap(c) {
			continue
		}
		if !slices.Contains(out.ambient, c) {
			out.ambient = append(out.ambient, c)
		}
	}
	return out, nil
}
