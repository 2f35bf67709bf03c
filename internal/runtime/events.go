package runtime

import (
	"sync"
	"sync/atomic"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// eventBuffer is how many events a subscriber may fall behind by before
// events to it are dropped.
const eventBuffer = 1024

// Event is one container or pod lifecycle event. Each manager fills in
// what it owns (a container event its pod's container statuses, a pod
// event the pod's status); the CRI layer adds the rest by PodID.
type Event struct {
	PodID string
	*runtimeapi.ContainerEventResponse
}

// Events fans container (and pod) lifecycle events out to every
// GetContainerEvents stream. Publish never blocks: a subscriber whose
// buffer is full loses the event, and the loss is counted, so a slow
// client can never stall the runtime.
type Events struct {
	mu      sync.Mutex
	subs    map[*Subscription]struct{}
	dropped atomic.Uint64
}

// Subscription is one listener.
type Subscription struct {
	C       chan Event
	dropped atomic.Uint64
	events  *Events
}

// NewEvents returns an empty broadcaster.
func NewEvents() *Events {
	return &Events{subs: map[*Subscription]struct{}{}}
}

// Subscribe adds a listener; Close it when done.
func (e *Events) Subscribe() *Subscription {
	s := &Subscription{C: make(chan Event, eventBuffer), events: e}
	e.mu.Lock()
	e.subs[s] = struct{}{}
	e.mu.Unlock()
	return s
}

// Close removes the listener. Its channel is not closed: Publish may
// hold a reference for an instant.
func (s *Subscription) Close() {
	s.events.mu.Lock()
	delete(s.events.subs, s)
	s.events.mu.Unlock()
}

// Dropped is how many events this listener missed.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Publish sends ev to every listener that has room.
func (e *Events) Publish(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for s := range e.subs {
		select {
		case s.C <- ev:
		default:
			s.dropped.Add(1)
			e.dropped.Add(1)
		}
	}
}

// Dropped is the total of events dropped for slow listeners.
func (e *Events) Dropped() uint64 { return e.dropped.Load() }

// Subscribers is the number of listeners.
func (e *Events) Subscribers() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.subs)
}
