package runtime

import (
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestEventsFanOutAndDrop(t *testing.T) {
	ev := NewEvents()
	a, b := ev.Subscribe(), ev.Subscribe()
	defer a.Close()
	for i := range eventBuffer + 10 {
		ev.Publish(Event{ContainerEventResponse: &runtimeapi.ContainerEventResponse{ContainerId: string(rune('a' + i%26))}})
		if i < 3 {
			<-b.C // b keeps up for a while
		}
	}
	if a.Dropped() != 10 || len(a.C) != eventBuffer {
		t.Fatalf("a: dropped %d, queued %d", a.Dropped(), len(a.C))
	}
	if b.Dropped() != 7 || ev.Dropped() != 17 {
		t.Fatalf("b dropped %d, total %d", b.Dropped(), ev.Dropped())
	}
	if first := <-a.C; first.GetContainerId() != "a" {
		t.Fatalf("first event %q: order lost", first.GetContainerId())
	}
	b.Close()
	if ev.Subscribers() != 1 {
		t.Fatalf("%d subscribers after close", ev.Subscribers())
	}
}
