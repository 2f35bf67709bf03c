package spec

import (
	"errors"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// An argument or environment entry the kernel's execve would refuse
// (E2BIG) is refused at creation, not left to fail at start.
func TestKernelArgumentLimit(t *testing.T) {
	long := strings.Repeat("x", maxArgLen)
	for name, cfg := range map[string]*runtimeapi.ContainerConfig{
		"command": {Command: []string{"sh", "-c", long}},
		"args":    {Args: []string{long}},
		"env":     {Envs: []*runtimeapi.KeyValue{{Key: "A", Value: []byte(long)}}},
	} {
		if err := Validate(cfg); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "131072") {
			t.Errorf("%s: got %v, want InvalidArgument naming the limit", name, err)
		}
	}
	in := input(t, &runtimeapi.ContainerConfig{})
	in.Image.Cmd = []string{long}
	in.Image.Entrypoint = nil
	if _, err := Generate(in); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("image Cmd: got %v", err)
	}
	if err := Validate(&runtimeapi.ContainerConfig{Command: []string{"sh", "-c", long[1:]}}); err != nil {
		t.Errorf("an argument just below the limit: %v", err)
	}
}
