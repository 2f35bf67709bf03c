// Package daemon wires berthd together: it loads the config, builds the
// services, serves the CRI socket and handles signals.
package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"k8s.io/klog/v2"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/container"
	"github.com/berth-cri/berth/internal/cri"
	"github.com/berth-cri/berth/internal/image"
	"github.com/berth-cri/berth/internal/metrics"
	"github.com/berth-cri/berth/internal/pod"
	"github.com/berth-cri/berth/internal/recovery"
	"github.com/berth-cri/berth/internal/stats"
	"github.com/berth-cri/berth/internal/stream"
	"github.com/berth-cri/berth/internal/version"
)

// Version is berth's version (see package version, which sets it).
var Version = version.Version

// daemon holds the live parts; the config snapshot is swapped atomically
// on SIGHUP and read by every service through current().
type daemon struct {
	loader config.Loader
	cfg    atomic.Pointer[config.Config]
	level  *slog.LevelVar
	log    *slog.Logger
	images *image.Service
	pods   *pod.Manager
	// containers runs containers under conmon.
	containers *container.Manager
	// streams serves exec, attach and port-forward.
	streams *stream.Server
	server  *cri.Server
	// stats samples containers and pods; metrics counts operations and
	// info serves the info socket and the metrics endpoint.
	stats   *stats.Collector
	metrics *metrics.Metrics
	info    *metrics.Server
	// cleanStop is set by a shutdown on SIGTERM/SIGINT or ctx: it leaves
	// a clean-shutdown marker.
	cleanStop bool
}

func (d *daemon) current() *config.Config { return d.cfg.Load() }

// allowedAnnotations returns the berth behaviour annotations that
// containers of runtime handler name may carry.
func (d *daemon) allowedAnnotations(name string) []string {
	_, h, err := d.current().Handler(name)
	if err != nil {
		return nil
	}
	return h.AllowedAnnotations
}

// Run starts berthd and blocks until ctx is done or SIGTERM/SIGINT.
func Run(ctx context.Context, loader config.Loader) error {
	cfg, err := loader.Load()
	if err != nil {
		return err
	}
	d := &daemon{loader: loader, level: new(slog.LevelVar)}
	d.cfg.Store(cfg)
	lvl, _ := config.ParseLogLevel(cfg.Berth.Runtime.LogLevel) // validated by Load
	d.level.Set(lvl)
	d.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: d.level}))
	// containers/storage and containers/image log through logrus in their
	// own format; keep only their warnings and errors in berthd's log.
	logrus.SetLevel(logrus.WarnLevel)
	// The streaming library logs through klog; route it into our log.
	klog.SetSlogLogger(d.log.With("component", "klog"))

	for _, dir := range []string{cfg.Berth.StateDir, cfg.Berth.RunDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	lock, err := lockRunDir(cfg.Berth.RunDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	// Signals are caught from here on: one that arrives during recovery
	// waits in the channel and is handled once serving starts, so even an
	// early SIGTERM ends in a clean shutdown rather than a crash.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	// Recovery: the markers say whether berthd crashed or the node
	// rebooted since the last run; the clean-shutdown marker is written
	// last of all, after storage is closed (defers run in reverse).
	start, err := recovery.Inspect(cfg.Berth.StateDir, cfg.Berth.RunDir)
	if err != nil {
		return err
	}
	defer func() {
		if d.cleanStop {
			if err := recovery.MarkClean(cfg.Berth.StateDir); err != nil {
				d.log.Error("clean shutdown marker", "error", err)
			}
		}
	}()
	d.images = image.New(d.current, d.log.With("component", "image"))
	defer func() {
		if err := d.images.Close(); err != nil {
			d.log.Error("close image storage", "error", err)
		}
	}()

	if start.Unclean {
		// Check containers/storage before anything uses it; only after a
		// crash, and only if it was ever opened (else it is cheap to skip).
		if opts, oerr := image.StoreOptions(cfg); oerr == nil {
			if _, serr := os.Stat(opts.GraphRoot); serr == nil {
				// Pulls cut short by the crash left their staging files;
				// no pull runs before the socket opens.
				staging := filepath.Join(opts.GraphRoot, "berth-tmp")
				if ents, rerr := os.ReadDir(staging); rerr == nil {
					for _, en := range ents {
						_ = os.RemoveAll(filepath.Join(staging, en.Name()))
					}
				}
				if st, serr := d.images.Store(); serr != nil {
					d.log.Error("open storage for its check", "error", serr)
				} else if cerr := recovery.CheckStorage(st, d.log.With("component", "recovery")); cerr != nil {
					d.log.Error("storage check", "error", cerr)
				}
			}
		}
	}
	if d.pods, err = pod.New(d.current, d.log.With("component", "pod")); err != nil {
		return err
	}
	defer d.pods.Close()

	// Metrics first: the image and container services report into them.
	d.metrics = metrics.New()
	d.images.SetPullObserver(d.metrics)

	// Containers: conmon, the exit watcher and the records of containers
	// that kept running while berthd was stopped. Pods stop and remove
	// their containers through it and run PID holders under its conmon.
	if d.containers, err = container.New(container.Deps{Config: d.current, Log: d.log.With("component", "container"),
		Images: d.images, Pods: d.pods, AllowedAnnotations: d.allowedAnnotations, Rebooted: start.Rebooted, OOM: d.metrics,
		ForeignExit: d.pods.HolderExited}); err != nil {
		return err
	}
	defer d.containers.Close()
	d.pods.SetContainerReaper(d.containers)
	d.pods.SetMonitor(d.containers.Monitor())
	d.pods.SetEventSink(d.containers.PublishPodEvent)
	// Everything is settled before the socket opens: no request sees a
	// half-recovered pod or container.
	recovery.Run(ctx, recovery.Deps{Start: start, Pods: d.pods, Containers: d.containers, Log: d.log.With("component", "recovery")})
	if err := start.Done(); err != nil {
		return err
	}

	if d.streams, err = stream.New(stream.ConfigFrom(cfg), d.containers, streamPods{d.pods}, d.log.With("component", "stream")); err != nil {
		return err
	}
	defer d.streams.Close()
	defer endStreamsOnStop(d.containers.Events(), d.streams)()

	// Cheap: the collector starts on the first stats request.
	d.metrics.CountEventsDropped(d.containers.Events().Dropped)
	d.stats = stats.New(stats.Options{Config: d.current, Log: d.log.With("component", "stats"),
		Pods: stats.Pods(d.pods), Containers: d.containers, Layers: stats.StorageLayers(d.images.Store)})
	defer d.stats.Close()

	d.server = cri.New(cri.Deps{
		Config:  d.current,
		Log:     d.log.With("component", "cri"),
		Version: Version,
		Images:  d.images,
		Pods:    d.pods,
		Streams: d.streams,
		// The pod manager owns CNI, so it answers NetworkReady.
		NetworkStatus: d.pods.NetworkStatus,
		Stats:         d.stats,
		Metrics:       d.metrics,
		Containers:    d.containers,
	})
	if err := d.server.Listen(cfg.Berth.API.Listen); err != nil {
		return err
	}
	if d.info, err = d.metrics.Serve(metrics.ServeOptions{Config: d.current, Log: d.log.With("component", "metrics"), Version: Version,
		StorageDriver: func() string {
			if st, err := d.images.Store(); err == nil {
				return st.GraphDriverName()
			}
			return ""
		},
		Containers: metrics.Containers(d.containers, d.pods)}); err != nil {
		return err
	}
	defer d.info.Close()
	served := make(chan error, 1)
	go func() { served <- d.server.Serve() }()
	d.log.Info("berthd serving", "socket", cfg.Berth.API.Listen, "version", Version)

	for {
		select {
		case err := <-served:
			return err
		case <-ctx.Done():
			return d.shutdown(served, "context done")
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				d.reload()
				continue
			}
			return d.shutdown(served, sig.String())
		}
	}
}

func (d *daemon) shutdown(served <-chan error, why string) error {
	d.log.Info("stopping", "reason", why)
	d.server.Stop(30 * time.Second)
	err := <-served
	d.cleanStop = err == nil
	return err
}

// reload builds a new snapshot and applies its reloadable keys; an invalid
// config leaves the running one in place.
func (d *daemon) reload() {
	next, err := d.loader.Load()
	if err != nil {
		d.log.Error("reload: keeping the current config", "error", err)
		return
	}
	merged, applied, ignored := config.Merge(d.current(), next)
	for _, c := range applied {
		d.log.Info("reload: applied", "key", c.Key, "old", c.Old, "new", c.New)
	}
	for _, c := range ignored {
		d.log.Warn("reload: needs a restart to take effect", "key", c.Key, "old", c.Old, "new", c.New)
	}
	lvl, _ := config.ParseLogLevel(merged.Berth.Runtime.LogLevel)
	d.level.Set(lvl)
	d.cfg.Store(merged)
	d.images.Reload()
	_ = d.streams.Reload() // TLS files; errors are logged
	d.log.Info("reload: done", "applied", len(applied), "ignored", len(ignored))
}
