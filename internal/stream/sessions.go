package stream

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"

	"github.com/berth-cri/berth/internal/errdefs"
)

// criRuntime is the streaming library's view of the server.
type criRuntime struct{ s *Server }

var _ streaming.Runtime = (*criRuntime)(nil)

func (r *criRuntime) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	ctx, done, err := r.s.sessions.track(ctx, id)
	if err != nil {
		return err
	}
	defer done()
	return r.s.exec(ctx, id, cmd, streams{in: in, out: out, err: errOut}, tty, resize)
}

func (r *criRuntime) Attach(ctx context.Context, id string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	ctx, done, err := r.s.sessions.track(ctx, id)
	if err != nil {
		return err
	}
	defer done()
	return r.s.attach(ctx, id, streams{in: in, out: out, err: errOut}, resize)
}

func (r *criRuntime) PortForward(ctx context.Context, podID string, port int32, stream io.ReadWriteCloser) error {
	// The library passes no context that ends with the client; find the
	// client's connection instead (SPDY streams know it).
	cc := r.s.conns.lookup(stream)
	if cc != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(cc, cancel)()
	}
	ctx, done, err := r.s.sessions.track(ctx, "")
	if err != nil {
		return err
	}
	defer done()
	return r.s.portForward(ctx, podID, port, stream, cc != nil)
}

// streams are a session's client side; nil members were not requested.
type streams struct {
	in       io.Reader
	out, err io.Writer
}

// sessions tracks the running sessions so that a container's can be ended
// when it stops and all of them when the server closes.
type sessions struct {
	mu     sync.Mutex
	next   uint64
	live   map[uint64]*session
	closed bool
	wg     sync.WaitGroup
}

type session struct {
	container string // "" for port-forward
	cancel    context.CancelFunc
}

func newSessions() *sessions { return &sessions{live: map[uint64]*session{}} }

// track registers a session; its context ends with parent, with the
// container (cancelContainer) or with the server (closeAll). done must be
// called when the session is over.
func (r *sessions) track(parent context.Context, container string) (context.Context, func(), error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, nil, fmt.Errorf("streaming server is closing: %w", errdefs.ErrUnavailable)
	}
	ctx, cancel := context.WithCancel(parent)
	r.next++
	id := r.next
	r.live[id] = &session{container: container, cancel: cancel}
	r.wg.Add(1)
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			cancel()
			r.mu.Lock()
			delete(r.live, id)
			r.mu.Unlock()
			r.wg.Done()
		})
	}, nil
}

// cancelContainer ends the sessions of one container and says how many.
func (r *sessions) cancelContainer(container string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.live {
		if s.container == container && container != "" {
			s.cancel()
			n++
		}
	}
	return n
}

// closeAll ends every session and refuses new ones.
func (r *sessions) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for _, s := range r.live {
		s.cancel()
	}
}

func (r *sessions) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.live)
}

// wait waits for every session to be done, up to timeout.
func (r *sessions) wait(timeout time.Duration) bool {
	ch := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(ch)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}
