package objmeta

import (
	"errors"
	"strings"
	"testing"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestCheck(t *testing.T) {
	big := strings.Repeat("v", DefaultMaxSize)
	for _, tc := range []struct {
		name        string
		labels      map[string]string
		annotations map[string]string
		max         int
		want        string // "" for accepted
	}{
		{"kubelet labels", map[string]string{"io.kubernetes.pod.name": strings.Repeat("a", 253), "app": ""}, nil, 0, ""},
		{"prefixed keys", map[string]string{"app.kubernetes.io/name": "web"}, map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{\"a\": 1}\n"}, 0, ""},
		{"annotations over the limit", nil, map[string]string{"a": big}, 0, "max_metadata_size"},
		{"labels and annotations together", map[string]string{"a": big[:DefaultMaxSize/2]}, map[string]string{"b": big[:DefaultMaxSize/2]}, 0, "limit of 262144"},
		{"limit configured", nil, map[string]string{"a": "12345"}, 4, "limit of 4"},
		{"limit off", nil, map[string]string{"a": big}, -1, ""},
		{"key with a space", map[string]string{"a b": "x"}, nil, 0, "label key"},
		{"key with a newline", nil, map[string]string{"a\nb": "x"}, 0, "annotation key"},
		{"key name too long", nil, map[string]string{strings.Repeat("k", 64): "x"}, 0, "longer than 63"},
		{"empty key", map[string]string{"": "x"}, nil, 0, "empty"},
		{"upper-case prefix", map[string]string{"Example.com/a": "x"}, nil, 0, "DNS subdomain"},
		{"two slashes", map[string]string{"a/b/c": "x"}, nil, 0, "name part"},
		{"label value with a newline", map[string]string{"a": "x\ny"}, nil, 0, "value"},
		{"label value too long", map[string]string{"a": strings.Repeat("x", 254)}, nil, 0, "longer than 253"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.labels, tc.annotations, tc.max)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want InvalidArgument naming %q", err, tc.want)
			}
			if len(err.Error()) > 1024 {
				t.Errorf("error is %d bytes long: it must not quote the whole value", len(err.Error()))
			}
		})
	}
}

func TestCheckBehaviour(t *testing.T) {
	for _, k := range []string{"io.berth.userns-mode", "io.kubernetes.cri-o.Devices", "io.kubernetes.cri-o.TrySkipVolumeSELinuxLabel",
		"run.oci.keep_original_groups", "io.kubernetes.cri.sandbox-id"} {
		err := CheckBehaviour(map[string]string{k: "1"}, "runc", nil)
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "not allowed for runtime handler \"runc\"") {
			t.Errorf("%s: got %v", k, err)
		}
		if err := CheckBehaviour(map[string]string{k: "1"}, "runc", []string{k}); err != nil {
			t.Errorf("%s allowed for the handler but refused: %v", k, err)
		}
	}
	if err := CheckBehaviour(map[string]string{"io.kubernetes.container.hash": "1", "berth.io/x": "y"}, "runc", nil); err != nil {
		t.Errorf("ordinary annotations refused: %v", err)
	}
}
