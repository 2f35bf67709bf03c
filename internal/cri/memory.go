package cri

import (
	"context"
	goruntime "runtime"
	"runtime/debug"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/stats"
)

// bigMessage is the size of a request or reply after which berthd gives
// its memory back: a capped 16 MiB ExecSync reply or a refused request of
// megabytes of labels would otherwise leave berthd's RSS that much higher
// until the Go runtime's slow background scavenger returns it.
const bigMessage = 1 << 20

// memoryReleaser is a gRPC stats handler: once an RPC that carried a big
// message has ended (its reply written and its buffers dropped), it runs
// a collection and returns the freed memory to the OS, in one background
// goroutine that coalesces releases asked for while it works.
type memoryReleaser struct {
	kick chan struct{}
}

type bigMessageKey struct{}

// releaseAgain is when memory is released a second time after a big RPC.
const releaseAgain = 2 * time.Second

// release returns freed memory to the OS. Two collections: gRPC keeps
// large buffers in sync.Pools, which hold what they had for one
// collection more.
func release() {
	goruntime.GC()
	debug.FreeOSMemory()
}

func newMemoryReleaser() *memoryReleaser {
	return &memoryReleaser{kick: make(chan struct{}, 1)}
}

// run releases memory each time it is kicked, until stop is closed.
func (m *memoryReleaser) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-m.kick:
			release()
			// A big reply may still be on its way out when its RPC
			// ends (HTTP/2 flow control holds its buffer until the
			// client has read it): once more a little later.
			select {
			case <-stop:
				return
			case <-time.After(releaseAgain):
				release()
			}
		}
	}
}

func (m *memoryReleaser) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, bigMessageKey{}, new(atomic.Bool))
}

func (m *memoryReleaser) HandleRPC(ctx context.Context, s stats.RPCStats) {
	big, _ := ctx.Value(bigMessageKey{}).(*atomic.Bool)
	if big == nil {
		return
	}
	switch s := s.(type) {
	case *stats.InPayload:
		if s.Length >= bigMessage {
			big.Store(true)
		}
	case *stats.OutPayload:
		if s.Length >= bigMessage {
			big.Store(true)
		}
	case *stats.End:
		if big.Load() {
			select {
			case m.kick <- struct{}{}:
			default: // a release is already due
			}
		}
	}
}

func (m *memoryReleaser) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (m *memoryReleaser) HandleConn(context.Context, stats.ConnStats) {}
