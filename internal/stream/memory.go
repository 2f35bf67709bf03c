package stream

import (
	"io"
	goruntime "runtime"
	"runtime/debug"
	"sync/atomic"
)

// releaseAfter is the output of one session after which berthd gives
// memory back to the OS when the session ends: the buffers a flood
// through a TTY went through are garbage by then, but an idle daemon
// would keep them in its RSS until the runtime's slow background
// scavenger returns them.
const releaseAfter = 1 << 20

// countingWriter counts what passes through to w.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// counted wraps st's outputs so that moved reports the bytes written
// to both.
func counted(st streams) (_ streams, moved func() int64) {
	n := new(atomic.Int64)
	if st.out != nil {
		st.out = countingWriter{w: st.out, n: n}
	}
	if st.err != nil {
		st.err = countingWriter{w: st.err, n: n}
	}
	return st, n.Load
}

// releaseMemory returns freed memory to the OS, in the background, when
// a session moved at least releaseAfter bytes.
func releaseMemory(moved int64) {
	if moved < releaseAfter {
		return
	}
	go func() {
		// Two collections: pooled buffers survive the first.
		goruntime.GC()
		debug.FreeOSMemory()
	}()
}
