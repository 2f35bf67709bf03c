package testutil

import (
	"bytes"
	"net/http"
	"strings"
	"time"
)

// Fault injectors for RegistryOptions.Handler. They compose:
//
//	Handler: func(h http.Handler) http.Handler { return testutil.StallBlobs(time.Minute)(testutil.CorruptBlobs(h)) }

// isBlobGET reports whether req downloads a blob (not an upload session).
func isBlobGET(req *http.Request) bool {
	return req.Method == http.MethodGet &&
		strings.Contains(req.URL.Path, "/blobs/") &&
		!strings.Contains(req.URL.Path, "/blobs/uploads")
}

// CorruptBlobs serves every blob body with one byte flipped in its
// middle, same length and headers, so the client's digest check (or
// decompression) fails. Manifests are served intact.
func CorruptBlobs(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !isBlobGET(req) {
			next.ServeHTTP(w, req)
			return
		}
		rec := &recorder{header: w.Header(), status: http.StatusOK}
		next.ServeHTTP(rec, req)
		body := rec.body.Bytes()
		if rec.status/100 == 2 && len(body) > 0 {
			body[len(body)/2] ^= 0xff
		}
		w.WriteHeader(rec.status)
		w.Write(body)
	})
}

// recorder buffers a response body; headers go straight to the real
// writer's header map.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(code int)        { r.status = code }
func (r *recorder) Write(p []byte) (int, error) { return r.body.Write(p) }

// StallBytes is how much of a blob StallBlobs sends before stalling.
const StallBytes = 16

// StallBlobs returns an injector that sends a blob's headers and its
// first StallBytes bytes, then stalls for d before sending the rest (or
// until the client goes away). A pull with a progress timeout shorter
// than d must fail; one with a longer timeout succeeds slowly.
func StallBlobs(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if !isBlobGET(req) {
				next.ServeHTTP(w, req)
				return
			}
			next.ServeHTTP(&staller{ResponseWriter: w, req: req, d: d, left: StallBytes}, req)
		})
	}
}

type staller struct {
	http.ResponseWriter
	req     *http.Request
	d       time.Duration
	left    int // bytes still to send before stalling
	stalled bool
}

func (s *staller) Write(p []byte) (int, error) {
	if s.stalled {
		return s.ResponseWriter.Write(p)
	}
	n := min(s.left, len(p))
	if _, err := s.ResponseWriter.Write(p[:n]); err != nil {
		return 0, err
	}
	s.left -= n
	if s.left > 0 {
		return n, nil
	}
	s.stalled = true
	http.NewResponseController(s.ResponseWriter).Flush()
	timer := time.NewTimer(s.d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-s.req.Context().Done():
		return n, s.req.Context().Err()
	}
	m, err := s.ResponseWriter.Write(p[n:])
	return n + m, err
}

// RefuseAll answers every request with 500 Internal Server Error.
func RefuseAll(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		http.Error(w, `{"errors":[{"code":"UNKNOWN","message":"injected failure"}]}`, http.StatusInternalServerError)
	})
}

// FailFirst returns an injector that answers the first n requests with
// 503 Service Unavailable and serves the rest normally (retry tests).
// Each call makes an independent counter.
func FailFirst(n int) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		left := make(chan struct{}, n)
		for range n {
			left <- struct{}{}
		}
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			select {
			case <-left:
				http.Error(w, `{"errors":[{"code":"UNAVAILABLE","message":"injected failure"}]}`, http.StatusServiceUnavailable)
			default:
				next.ServeHTTP(w, req)
			}
		})
	}
}
