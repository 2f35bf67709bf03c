package container

import (
	"context"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// SpecAdjuster changes a container's spec once berth has built it and
// before the runtime sees it: NRI plugins' adjustments. The caller of
// CreateAdjusted hands one to that creation alone; the manager keeps
// none. An error fails the creation, which is then undone.
type SpecAdjuster interface {
	AdjustSpec(ctx context.Context, id string, spec *specs.Spec) error
}
