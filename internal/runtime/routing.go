package runtime

import "sync"

// Notice tells the owner of a process under conmon that something ended.
type Notice struct {
	// ID is the container id the process was created with.
	ID string
	// ConmonGone is set when the notice comes from reaping the id's
	// conmon rather than from its exit file: conmon may have died
	// without writing one, which the owner checks.
	ConmonGone bool
}

// noticeBuffer is how far an owner may fall behind before the exit
// watcher waits for it.
const noticeBuffer = 1024

// Owner receives the notices of the ids it claimed, on C, in order. The
// pod and container managers each hold one: exits are routed by who
// registered the process, so neither needs to know the other.
type Owner struct {
	C <-chan Notice
	c chan Notice
	r *router
}

// router maps claimed ids to their owners.
type router struct {
	mu     sync.Mutex
	owners map[string]*Owner
	// closed ends deliveries that wait for an owner that stopped reading.
	closed chan struct{}
}

// NewOwner returns an owner with no claims yet.
func (m *Monitor) NewOwner() *Owner {
	c := make(chan Notice, noticeBuffer)
	return &Owner{C: c, c: c, r: &m.router}
}

// Claim routes the notices of id to o from now on. Creation claims before
// conmon starts; loading records claims what a previous berthd made.
func (o *Owner) Claim(id string) {
	o.r.mu.Lock()
	o.r.owners[id] = o
	o.r.mu.Unlock()
}

// Release stops routing id's notices (the process is gone for good).
func (o *Owner) Release(id string) {
	o.r.mu.Lock()
	if o.r.owners[id] == o {
		delete(o.r.owners, id)
	}
	o.r.mu.Unlock()
}

// route delivers n to the owner of its id; it reports false when nobody
// claimed the id.
func (r *router) route(n Notice) bool {
	r.mu.Lock()
	o := r.owners[n.ID]
	r.mu.Unlock()
	if o == nil {
		return false
	}
	select {
	case o.c <- n:
	case <-r.closed:
	}
	return true
}
