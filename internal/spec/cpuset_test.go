package spec

import (
	"errors"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestResourcesRefuseCPUSetsTheHostLacks(t *testing.T) {
	h := &Host{OnlineCPUs: "0-3", OnlineMems: "0"}
	for _, tc := range []struct {
		cpus, mems string
		ok         bool
	}{
		{"0-3", "0", true},
		{"1,3", "", true},
		{"4", "", false},
		{"0-8", "", false},
		{"3-1", "", false},
		{"0-4000000000", "", false},
		{"0", "1", false},
	} {
		var adapted []string
		_, err := Resources(&runtimeapi.LinuxContainerResources{CpusetCpus: tc.cpus, CpusetMems: tc.mems}, 0, h, &adapted)
		if tc.ok && err != nil {
			t.Errorf("cpus %q mems %q: %v", tc.cpus, tc.mems, err)
		}
		if !tc.ok && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("cpus %q mems %q: %v, want invalid argument", tc.cpus, tc.mems, err)
		}
	}
	// Unknown online lists let any well-formed list through.
	var adapted []string
	if _, err := Resources(&runtimeapi.LinuxContainerResources{CpusetCpus: "63"}, 0, &Host{}, &adapted); err != nil {
		t.Errorf("unknown host CPUs: %v", err)
	}
}

// TestCPUSetOfManyWideRangesIsRefusedAtOnce: a list repeating the widest
// range thousands of times (a few hundred KB in a request) names more
// members than there can be distinct ones and is refused without being
// expanded; before, each range was expanded in turn and the request ran
// for minutes.
func TestCPUSetOfManyWideRangesIsRefusedAtOnce(t *testing.T) {
	wide := strings.Repeat("0-65536,", 20000) + "0"
	if _, ok := parseCPUSet(wide); ok {
		t.Fatal("a list naming 1.3 billion members was accepted")
	}
	if set, ok := parseCPUSet("0-3,2-5,7"); !ok || len(set) != 7 {
		t.Fatalf("overlapping ranges: %v %v", set, ok)
	}
}
