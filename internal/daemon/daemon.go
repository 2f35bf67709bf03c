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

	"github.com/berth-cri/berth/internal/checkpoint"
	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/container"
	"github.com/berth-cri/berth/internal/cri"
	"github.com/berth-cri/berth/internal/image"
	"github.com/berth-cri/berth/internal/lifecycle"
	"github.com/berth-cri/berth/internal/metrics"
	"github.com/berth-cri/berth/internal/ociext"
	"github.com/berth-cri/berth/internal/pod"
	"github.com/berth-cri/berth/internal/recovery"
	"github.com/berth-cri/berth/internal/runtime"
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
	// origins says which keys of the current snapshot command-line flags
	// set, and the files' values they hide; a reload compares them.
	origins map[string]config.Origin
	// systemd is told when berthd serves and when it stops.
	systemd notifier
	level   *slog.LevelVar
	log     *slog.Logger
	images  *image.Service
	// monitor is the runtime layer's conmon driver and events the
	// lifecycle event bus, both shared by the pod and container managers.
	monitor *runtime.Monitor
	events  *runtime.Events
	pods    *pod.Manager
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
	d := &daemon{loader: loader, level: new(slog.LevelVar), systemd: takeNotifySocket()}
	if err := closeInheritedOnExec(); err != nil {
		return err
	}
	cfg, origins, err := loader.LoadWithOrigins()
	if err != nil {
		return err
	}
	d.origins = origins
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
	// Metrics first: the image and container services report into them.
	d.metrics = metrics.New()
	d.images = image.New(d.current, d.log.With("component", "image"), d.metrics)
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
	// The runtime layer: berthd becomes the child subreaper of every
	// conmon (process-wide, so here and once), then the conmon driver
	// watches the exit dir and the event bus is made.
	childSignals, err := runtime.BecomeSubreaper()
	if err != nil {
		return err
	}
	if d.monitor, err = runtime.New(runtime.Config{
		Conmon: cfg.Berth.Runtime.Conmon, ExitDir: filepath.Join(cfg.Berth.RunDir, "exits"),
		AttachDir: filepath.Join(cfg.Berth.RunDir, "attach"), LogLevel: cfg.Berth.Runtime.LogLevel,
		Log: d.log.With("component", "monitor"), ChildSignals: childSignals,
	}); err != nil {
		return err
	}
	defer d.monitor.Close()
	d.events = runtime.NewEvents()

	if d.pods, err = pod.New(pod.Deps{Config: d.current, Log: d.log.With("component", "pod"), Monitor: d.monitor, Events: d.events}); err != nil {
		return err
	}
	defer d.pods.Close()

	// What each runtime handler can do, asked lazily and once; shared by
	// container creation and Status.
	features := runtime.NewFeatureProbe()
	// CDI devices, OCI hooks and default mounts: read, and their dirs
	// watched, on the first container creation or info request.
	ext := ociext.New(d.current, d.log.With("component", "ociext"))
	defer ext.Close()
	// Containers: the records of containers that kept running while
	// berthd was stopped.
	if d.containers, err = container.New(container.Deps{Config: d.current, Log: d.log.With("component", "container"),
		Images: d.images, Monitor: d.monitor, Events: d.events, AllowedAnnotations: d.allowedAnnotations,
		Rebooted: start.Rebooted, OOM: d.metrics, Features: features, Extensions: ext}); err != nil {
		return err
	}
	defer d.containers.Close()
	// Both managers have claimed their ids: deliver the exits that
	// happened while berthd was down.
	d.monitor.Rescan()
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
	defer endStreamsOnStop(d.events, d.streams)()

	// Cheap: the collector starts on the first stats request.
	d.metrics.CountEventsDropped(d.events.Dropped)
	d.metrics.CountContainersByState(containerStateCounts(d.containers))
	d.stats = stats.New(stats.Options{Config: d.current, Log: d.log.With("component", "stats"),
		Pods: statsPods{d.pods}, Containers: d.containers, Layers: stats.StorageLayers(d.images.Store)})
	defer d.stats.Close()

	tracer, err := d.startTracing(ctx, cfg.Berth.Tracing)
	if err != nil {
		return err
	}
	defer d.stopTracing(tracer)

	plugins, err := d.startNRI(cfg, ext)
	if err != nil {
		return err
	}
	defer plugins.Stop()

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
		Lifecycle:     lifecycle.New(d.pods, d.containers, plugins),
		NRIInfo:       func() any { return plugins.Info() },
		Events:        d.events,
		Checkpoint:    checkpoint.NewProber(""),
		Features:      features,
		Extensions:    ext.Report,
		Tracer:        tracerOf(tracer),
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
		Containers: containerInfo{ctrs: d.containers, pods: d.pods}, Extensions: ext.Report,
		NRI: func() any { return plugins.Info() }}); err != nil {
		return err
	}
	defer d.info.Close()
	served := make(chan error, 1)
	go func() { served <- d.server.Serve() }()
	d.log.Info("berthd serving", "socket", cfg.Berth.API.Listen, "version", Version)
	// Only now is the CRI socket answering: a Type=notify unit orders the
	// kubelet after this.
	if err := d.systemd.notify("READY=1\nSTATUS=serving " + cfg.Berth.API.Listen); err != nil {
		d.log.Warn("tell systemd berthd is ready", "error", err)
	}

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
	if err := d.systemd.notify("STOPPING=1"); err != nil {
		d.log.Warn("tell systemd berthd is stopping", "error", err)
	}
	d.server.Stop(30 * time.Second)
	err := <-served
	d.cleanStop = err == nil
	return err
}

// reload builds a new snapshot and applies its reloadable keys; an invalid
// config leaves the running one in place. What it did is logged after the
// new log level is in force, key by key: applied, needing a restart,
// refused, or hidden by a command-line flag.
func (d *daemon) reload() {
	next, origins, err := d.loader.LoadWithOrigins()
	if err != nil {
		d.log.Error("reload: keeping the current config", "error", err)
		return
	}
	r := config.Merge(d.current(), next)
	oldLevel := d.level.Level()
	newLevel, _ := config.ParseLogLevel(r.Config.Berth.Runtime.LogLevel) // validated by Merge
	d.level.Set(newLevel)
	d.cfg.Store(r.Config)
	d.images.Reload()
	_ = d.streams.Reload() // TLS files; errors are logged
	shadowed := config.HiddenByFlags(d.origins, origins)
	d.origins = origins

	ctx := context.Background()
	for _, c := range r.Applied {
		// A level change is logged at the more severe of the two levels
		// (warn at most), so that it shows under the old and the new one.
		level := slog.LevelInfo
		if c.Key == "berth.runtime.log_level" {
			level = min(max(oldLevel, newLevel, slog.LevelInfo), slog.LevelWarn)
		}
		d.log.Log(ctx, level, "reload: applied", "key", c.Key, "old", c.Old, "new", c.New)
	}
	for _, c := range r.Restart {
		d.log.Warn("reload: needs a restart to take effect", "key", c.Key, "old", c.Old, "new", c.New)
	}
	for _, c := range r.Refused {
		d.log.Warn("reload: refused", "key", c.Key, "old", c.Old, "new", c.New, "reason", c.Reason)
	}
	for _, c := range shadowed {
		d.log.Warn("reload: changed in the config files, but a command-line flag sets it", "key", c.Key, "old", c.Old, "new", c.New, "reason", c.Reason)
	}
	d.log.Info("reload: done", "applied", changeKeys(r.Applied), "needs_restart", changeKeys(r.Restart),
		"refused", changeKeys(r.Refused), "set_by_flag", changeKeys(shadowed))
}

func changeKeys(cs []config.Change) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Key
	}
	return out
}
