package pod

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestUpdateResourcesIsRecordedDurably(t *testing.T) {
	e := newEnv(t)
	m := e.start()
	id := e.run("web")
	e.await(id, evStarted)
	ctx := context.Background()
	over := &runtimeapi.LinuxContainerResources{CpuShares: 10, MemoryLimitInBytes: 1 << 20}
	res := &runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 64 << 20}
	if err := m.UpdateResources(ctx, id, over, res); err != nil {
		t.Fatal(err)
	}
	check := func(sb *Sandbox) {
		t.Helper()
		if sb.Resources == nil || !proto.Equal(sb.Resources.Overhead, over) || !proto.Equal(sb.Resources.Resources, res) {
			t.Fatalf("recorded resources %+v", sb.Resources)
		}
	}
	check(e.get(id))
	m = e.restart()
	check(e.get(id))

	bad := &runtimeapi.LinuxContainerResources{CpuShares: -1}
	if err := m.UpdateResources(ctx, id, nil, bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("negative shares: %v, want invalid argument", err)
	}
	check(e.get(id))
	if err := m.UpdateResources(ctx, "nosuchpod", nil, res); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown pod: %v, want not found", err)
	}
	if err := e.stop(id); err != nil {
		t.Fatal(err)
	}
	if err := m.UpdateResources(ctx, id, nil, res); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("stopped pod: %v, want failed precondition", err)
	}
}

func TestPodLimitsAddOverhead(t *testing.T) {
	over := &runtimeapi.LinuxContainerResources{CpuShares: 10, CpuQuota: 1000, MemoryLimitInBytes: 1 << 20}
	l := podLimits(over, &runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 64 << 20})
	if l.CPUShares != 522 || l.CPUQuota != 51000 || l.CPUPeriod != 100000 || l.Memory != 65<<20 {
		t.Errorf("limits %+v", l)
	}
	// Unlimited containers keep the pod unlimited whatever the overhead.
	if l := podLimits(over, &runtimeapi.LinuxContainerResources{CpuShares: 2}); l.CPUQuota != 0 || l.Memory != 0 {
		t.Errorf("unlimited pod got limits %+v", l)
	}
}
