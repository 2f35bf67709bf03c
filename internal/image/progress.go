package image

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"go.podman.io/image/v5/types"
)

// errNoProgress cancels a pull that has not moved for
// pull_progress_timeout.
var errNoProgress = errors.New("no pull progress")

// reportEvery is how often a running pull logs its byte count.
const reportEvery = 5 * time.Second

// progress consumes containers/image's progress events for one copy: it
// logs blobs and bytes at info, and cancels the copy when no event has
// arrived for the progress timeout. Events are sent while data flows (at
// most every interval), so silence means the registry stopped sending.
type progress struct {
	obs      PullObserver
	ctx      context.Context
	cancel   context.CancelCauseFunc
	events   chan types.ProgressProperties
	interval time.Duration
	done     chan struct{}
	stats    progressStats
}

type progressStats struct {
	bytes   uint64
	layers  int
	skipped int
}

// PullObserver is told of every blob a pull transfers or finds already
// present; the daemon passes its metrics here.
type PullObserver interface {
	ImagePullBlob(mediaType string, transferred uint64, size int64)
	ImageLayerReused(digest string, size int64)
}

func newProgress(parent context.Context, log *slog.Logger, obs PullObserver, ref string, timeout time.Duration) *progress {
	ctx, cancel := context.WithCancelCause(parent)
	interval := time.Second
	if timeout > 0 {
		// Several events per timeout period, so a slow but moving pull
		// is never mistaken for a stalled one.
		interval = min(interval, max(timeout/4, 10*time.Millisecond))
	}
	p := &progress{
		obs:      obs,
		ctx:      ctx,
		cancel:   cancel,
		events:   make(chan types.ProgressProperties, 16),
		interval: interval,
		done:     make(chan struct{}),
	}
	go p.run(log.With("image", ref), timeout)
	return p
}

func (p *progress) run(log *slog.Logger, timeout time.Duration) {
	defer close(p.done)
	var stalled <-chan time.Time
	var timer *time.Timer
	if timeout > 0 {
		timer = time.NewTimer(timeout)
		defer timer.Stop()
		stalled = timer.C
	}
	ticker := time.NewTicker(reportEvery)
	defer ticker.Stop()
	var reported uint64
	// The channel must be drained until stop closes it, even after a
	// cancel: copy.Image blocks on sending.
	for {
		select {
		case ev, ok := <-p.events:
			if !ok {
				return
			}
			if timer != nil && stalled != nil {
				timer.Reset(timeout)
			}
			p.note(log, ev)
		case <-stalled:
			log.Warn("pull made no progress; aborting", "timeout", timeout, "bytes", p.stats.bytes)
			p.cancel(errNoProgress)
			stalled = nil
		case <-ticker.C:
			if p.stats.bytes != reported {
				reported = p.stats.bytes
				log.Info("pull progress", "bytes", p.stats.bytes, "layers", p.stats.layers)
			}
		}
	}
}

func (p *progress) note(log *slog.Logger, ev types.ProgressProperties) {
	a := ev.Artifact
	kind := "layer"
	if isConfigMediaType(a.MediaType) {
		kind = "config"
	}
	switch ev.Event {
	case types.ProgressEventNewArtifact:
		log.Info("pulling blob", "kind", kind, "digest", a.Digest, "size", a.Size)
	case types.ProgressEventRead:
		p.stats.bytes += ev.OffsetUpdate
	case types.ProgressEventDone:
		p.stats.bytes += ev.OffsetUpdate
		if kind == "layer" {
			p.stats.layers++
		}
		log.Info("pulled blob", "kind", kind, "digest", a.Digest, "bytes", ev.Offset, "total_bytes", p.stats.bytes, "layers", p.stats.layers)
		if p.obs != nil {
			p.obs.ImagePullBlob(a.MediaType, ev.Offset, a.Size)
		}
	case types.ProgressEventSkipped:
		p.stats.skipped++
		log.Info("blob already present", "kind", kind, "digest", a.Digest)
		if p.obs != nil && kind == "layer" {
			p.obs.ImageLayerReused(a.Digest.String(), a.Size)
		}
	}
}

func isConfigMediaType(mt string) bool {
	return strings.Contains(mt, "config") || strings.Contains(mt, "container.image.v1")
}

// stop ends event handling once the copy has returned and reports the
// totals.
func (p *progress) stop() progressStats {
	close(p.events)
	<-p.done
	return p.stats
}

// release frees the context; call it when the copy's result is handled.
func (p *progress) release() { p.cancel(nil) }
