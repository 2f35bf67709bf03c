package testutil

import (
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/runtime"
)

// AwaitEvent waits for event typ of the container (or pod) with this id on
// sub, skipping others. The minute is a hang guard, not a timing check.
func AwaitEvent(t testing.TB, sub *runtime.Subscription, id string, typ runtimeapi.ContainerEventType) {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case ev := <-sub.C:
			if ev.ContainerId == id && ev.ContainerEventType == typ {
				return
			}
		case <-timeout:
			t.Fatalf("no %s event for %s", typ, id)
		}
	}
}
