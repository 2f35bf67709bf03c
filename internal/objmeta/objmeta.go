// Package objmeta holds the rules pods and containers share about their
// labels and annotations: how large they may be, what their keys and
// values may look like, and which behaviour annotations a runtime handler
// lets through. Both RunPodSandbox and CreateContainer apply them, so a
// request cannot reach through one object what the other refuses
// (CVE-2024-3154: a pod annotation that changes how a runtime behaves).
package objmeta

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/berth-cri/berth/internal/errdefs"
)

// DefaultMaxSize is the Kubernetes API's own limit on an object's
// annotations (256 KiB); berth applies it to labels and annotations
// together, since the kubelet copies both from API objects.
const DefaultMaxSize = 256 << 10

// Kubernetes name rules (k8s.io/apimachinery validation).
const (
	maxNameLen   = 63  // the name part of a qualified name
	maxPrefixLen = 253 // a DNS subdomain
	// maxLabelValueLen is the API's 63, raised to 253 because the kubelet
	// copies object names (DNS subdomains, up to 253 bytes) into labels
	// such as io.kubernetes.pod.name.
	maxLabelValueLen = 253
)

// BehaviourPrefixes mark annotations that change how a runtime runs a
// pod or container: berth's own, CRI-O's and containerd's (a node moved
// between runtimes keeps its pod specs), and crun's (run.oci.*, read from
// the OCI spec, where a container's annotations end up). Each such
// annotation must be allowed for the pod's runtime handler.
var BehaviourPrefixes = []string{"io.berth.", "io.kubernetes.cri-o.", "io.kubernetes.cri.", "run.oci."}

func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errdefs.ErrInvalidArgument)...)
}

// Check applies the size and syntax rules to one object's labels and
// annotations. maxSize bounds the bytes of all keys and values together;
// 0 means DefaultMaxSize and a negative value turns the size check off.
func Check(labels, annotations map[string]string, maxSize int) error {
	if maxSize == 0 {
		maxSize = DefaultMaxSize
	}
	total := 0
	for k, v := range labels {
		total += len(k) + len(v)
	}
	for k, v := range annotations {
		total += len(k) + len(v)
	}
	if maxSize > 0 && total > maxSize {
		return invalid("labels and annotations hold %d bytes, more than the limit of %d bytes per object (berth.api.max_metadata_size)", total, maxSize)
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if err := qualifiedName(k); err != nil {
			return invalid("label key %q: %v", clip(k), err)
		}
		if err := labelValue(labels[k]); err != nil {
			return invalid("label %s: value %q: %v", k, clip(labels[k]), err)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(annotations)) {
		if err := qualifiedName(k); err != nil {
			return invalid("annotation key %q: %v", clip(k), err)
		}
	}
	return nil
}

// CheckBehaviour refuses an annotation with a behaviour prefix that the
// runtime handler does not list in allowed_annotations.
func CheckBehaviour(annotations map[string]string, handler string, allowed []string) error {
	for _, k := range slices.Sorted(maps.Keys(annotations)) {
		for _, p := range BehaviourPrefixes {
			if strings.HasPrefix(k, p) && !slices.Contains(allowed, k) {
				return invalid("annotation %s is not allowed for runtime handler %q", k, handler)
			}
		}
	}
	return nil
}

// qualifiedName is Kubernetes' rule for label and annotation keys: an
// optional DNS-subdomain prefix and '/', then a name of at most 63
// characters of letters, digits, '-', '_' and '.', starting and ending
// with a letter or digit.
func qualifiedName(k string) error {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		name, prefix = prefix, ""
	} else if err := dnsSubdomain(prefix); err != nil {
		return fmt.Errorf("prefix: %v", err)
	}
	if name == "" {
		return fmt.Errorf("the name part is empty")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("the name part is longer than %d characters", maxNameLen)
	}
	if !nameChars(name) {
		return fmt.Errorf("the name part must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit")
	}
	return nil
}

// labelValue: empty, or like a name part, up to maxLabelValueLen.
func labelValue(v string) error {
	if v == "" {
		return nil
	}
	if len(v) > maxLabelValueLen {
		return fmt.Errorf("longer than %d characters", maxLabelValueLen)
	}
	if !nameChars(v) {
		return fmt.Errorf("must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit")
	}
	return nil
}

func dnsSubdomain(s string) error {
	if s == "" || len(s) > maxPrefixLen {
		return fmt.Errorf("must be a DNS subdomain of 1 to %d characters", maxPrefixLen)
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%q is not a DNS subdomain", s)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("%q is not a DNS subdomain (lower-case letters, digits, '-' and '.')", s)
			}
		}
	}
	return nil
}

func nameChars(s string) bool {
	for i, r := range s {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if alnum {
			continue
		}
		if i == 0 || i == len(s)-1 || (r != '-' && r != '_' && r != '.') {
			return false
		}
	}
	return true
}

// clip shortens a value quoted in an error: the value may be huge.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
