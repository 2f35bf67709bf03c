package container

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/berth-cri/berth/internal/errdefs"
)

// The default profile is loaded when the kernel lacks it, once; a
// missing localhost profile is refused; unconfined and none need nothing.
func TestAppArmorEnsure(t *testing.T) {
	loadedList := "docker-default (enforce)\nmyprof (complain)\n"
	var loads []string
	a := &appArmor{
		profiles: func() ([]byte, error) { return []byte(loadedList), nil },
		load: func(_ context.Context, text string) error {
			loads = append(loads, text)
			loadedList += "berth-default (enforce)\n"
			return nil
		},
	}
	ctx := context.Background()
	for _, p := range []string{"", "unconfined", "myprof"} {
		if err := a.ensure(ctx, p, "berth-default"); err != nil {
			t.Fatalf("%q: %v", p, err)
		}
	}
	if len(loads) != 0 {
		t.Fatalf("loaded %d profiles for profiles already there", len(loads))
	}
	for range 2 {
		if err := a.ensure(ctx, "berth-default", "berth-default"); err != nil {
			t.Fatal(err)
		}
	}
	if len(loads) != 1 || !strings.Contains(loads[0], "profile berth-default ") {
		t.Fatalf("loads %q, want the default profile once", loads)
	}
	err := a.ensure(ctx, "not-loaded", "berth-default")
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "not-loaded") {
		t.Fatalf("missing localhost profile: %v", err)
	}
}
