// Package stats is berth's one stats collector: it samples the cgroups
// (v1 or v2) of every container and pod into a small ring per object,
// from which CPU rates are computed, reads each pod's interface counters
// inside its network namespace, and measures writable layers in a
// background worker. The CRI stats RPCs only read what it holds.
//
// With [berth.stats] stats_collection_period > 0, one goroutine samples
// everything once per period and the RPCs answer from memory, except for
// the CPU counter: each RPC reads that afresh for what it reports (one
// small file per cgroup), so that two calls a second apart, as crictl
// stats makes, see the time move and get a rate. With 0, each RPC
// samples what it reports in full (cgroup and /proc/net/dev reads only,
// which never touch a disk). Either way, measuring a writable layer walks
// a directory, so it happens in the worker, one layer at a time, and an
// RPC reports the last measurement (none before the first).
//
// Nothing runs until the first stats request. The collector needs a
// PodSource and a ContainerSource (see sources.go) and, for writable
// layers, a LayerSource.
package stats

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/internal/config"
)

const (
	// ringSize CPU samples are kept per object for CPU rates.
	ringSize = 8
	// minWindow is the shortest interval a CPU rate is computed over:
	// long enough that the counter's scheduler-tick granularity (at most
	// 10ms) stays a small error, short enough that two calls a second
	// apart get a rate.
	minWindow = 500 * time.Millisecond
	// ringSpacing keeps on-demand bursts from flooding the ring.
	ringSpacing = 250 * time.Millisecond
	// minLayerAge is how old a writable layer measurement may get
	// before it is redone (the period, when longer).
	minLayerAge = 10 * time.Second
	// layerQueue bounds the pending layer measurements.
	layerQueue = 1024
)

// Options are the collector's collaborators. Pods is required;
// Containers may be nil (no container stats). Neither may touch a disk
// or call a runtime: they are called on every request.
type Options struct {
	Config     func() *config.Config
	Log        *slog.Logger
	Pods       PodSource
	Containers ContainerSource
	// Layers measures writable layers; nil reports none.
	Layers LayerSource
}

// Collector samples containers and pods. It is safe for concurrent use.
type Collector struct {
	opts   Options
	log    *slog.Logger
	period time.Duration

	start   sync.Once
	reader  cgroups.Reader
	readNet func(nsPath string) ([]Interface, error)
	now     func() time.Time // the clock samples are taken on
	ctx     context.Context
	cancel  context.CancelFunc
	done    sync.WaitGroup
	queue   chan string

	mu     sync.Mutex
	ctrs   map[string]*series
	pods   map[string]*series
	nets   map[string]netSample
	layers map[string]*layerEntry
}

// series is the sampling history of one cgroup.
type series struct {
	latest cgroups.Usage // the newest full read
	// cpu is the newest CPU reading, from a full read or one of the CPU
	// counter alone; never older than latest.
	cpu      cgroups.CPUSample
	has      bool
	vanished bool // the last read found no cgroup (logged once)
	ring     [ringSize]cgroups.CPUSample
	n, head  int // ring entries and the index of the newest
}

// reading is what an RPC reports of one cgroup: the latest full sample,
// the latest CPU reading and the CPU rate when there is one.
type reading struct {
	usage  cgroups.Usage
	cpu    cgroups.CPUSample
	rate   uint64
	rateOK bool
}

type netSample struct {
	time time.Time
	ifs  []Interface
}

type layerEntry struct {
	usage     LayerUsage
	ok        bool
	measuring bool
}

// New returns a collector; nothing is read or started until the first
// request.
func New(opts Options) *Collector {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Collector{
		opts:    opts,
		log:     opts.Log,
		period:  opts.Config().Berth.Stats.CollectionPeriod.Duration,
		ctx:     ctx,
		cancel:  cancel,
		queue:   make(chan string, layerQueue),
		readNet: readNetNS,
		now:     time.Now,
		ctrs:    map[string]*series{},
		pods:    map[string]*series{},
		nets:    map[string]netSample{},
		layers:  map[string]*layerEntry{},
	}
}

// Close stops the background goroutines.
func (c *Collector) Close() error {
	c.cancel()
	c.done.Wait()
	return nil
}

// ensure probes the cgroup layout and starts the goroutines, once.
func (c *Collector) ensure() {
	c.start.Do(func() {
		if c.ctx.Err() != nil {
			return
		}
		if c.reader == nil {
			r, err := cgroups.ProbeReader()
			if err != nil {
				c.log.Warn("stats: no cgroups to read; CPU and memory report zeros", "error", err)
			} else {
				c.reader = r
			}
		}
		c.done.Add(1)
		go c.layerWorker()
		if c.period > 0 {
			c.done.Add(1)
			go c.loop()
		}
		c.log.Info("stats collector started", "period", c.period)
	})
}

// loop samples everything once per period.
func (c *Collector) loop() {
	defer c.done.Done()
	t := time.NewTicker(c.period)
	defer t.Stop()
	for {
		c.sampleAll()
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sampleAll samples every container and pod and forgets the gone ones.
func (c *Collector) sampleAll() {
	ctrs := c.containers()
	pods := c.opts.Pods.StatsPods()
	for _, t := range ctrs {
		c.sampleContainer(t)
	}
	for _, p := range pods {
		c.samplePod(p)
	}
	c.prune(ctrs, pods)
}

func (c *Collector) containers() []ContainerTarget {
	if c.opts.Containers == nil {
		return nil
	}
	return c.opts.Containers.StatsContainers()
}

// prune drops the state of objects that no longer exist; called with
// complete lists only.
func (c *Collector) prune(ctrs []ContainerTarget, pods []PodTarget) {
	keepC := make(map[string]bool, len(ctrs))
	keepL := make(map[string]bool, len(ctrs))
	for _, t := range ctrs {
		keepC[t.ID] = true
		keepL[t.StorageID] = true
	}
	keepP := make(map[string]bool, len(pods))
	for _, p := range pods {
		keepP[p.ID] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.ctrs {
		if !keepC[id] {
			delete(c.ctrs, id)
		}
	}
	for id := range c.layers {
		if !keepL[id] {
			delete(c.layers, id)
		}
	}
	for id := range c.pods {
		if !keepP[id] {
			delete(c.pods, id)
			delete(c.nets, id)
		}
	}
}

// fresh reports whether s was sampled recently enough to answer from.
func (c *Collector) fresh(s *series) bool {
	return c.period > 0 && s != nil && s.has && c.now().Sub(s.latest.Time) < 2*c.period
}

// containerUsage returns the container's latest sample, with its CPU
// counter read now: in a full sample when on demand or when the loop
// has not sampled it lately, else alone.
func (c *Collector) containerUsage(t ContainerTarget) reading {
	c.mu.Lock()
	fresh := c.fresh(c.ctrs[t.ID])
	c.mu.Unlock()
	// A container that does not run has nothing to read: its (zero)
	// sample is cheap, and its timestamp moves too.
	if !fresh || !t.Running || t.CgroupPath == "" || !c.sampleCPU(c.ctrs, t.ID, cgroups.PathDir(t.CgroupPath)) {
		c.sampleContainer(t)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ctrs[t.ID].reading()
}

// sampleCPU reads only the CPU counter of the cgroup rel into m[id],
// which has a full sample. It returns false when it could not; the
// caller then samples in full, which records why.
func (c *Collector) sampleCPU(m map[string]*series, id, rel string) bool {
	if c.reader == nil {
		return false
	}
	cs, err := c.reader.ReadCPU(rel)
	if err != nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := m[id]
	if s == nil || s.vanished {
		return false
	}
	s.addCPU(cs)
	return true
}

func (c *Collector) sampleContainer(t ContainerTarget) {
	if t.StorageID != "" {
		c.wantLayer(t.StorageID)
	}
	var u cgroups.Usage
	var err error
	switch {
	case !t.Running || t.CgroupPath == "":
		u = cgroups.Usage{Time: time.Now()}
	case c.reader == nil:
		u = cgroups.Usage{Time: time.Now()}
	default:
		u, err = c.reader.Read(cgroups.PathDir(t.CgroupPath))
	}
	c.record(c.ctrs, "container", t.ID, u, err)
}

// samplePod reads the pod's own cgroup, when it has one, and its
// network counters.
func (c *Collector) samplePod(p PodTarget) {
	if p.CgroupDir != "" && c.reader != nil {
		u, err := c.reader.Read(cgroups.PathDir(p.CgroupDir))
		c.record(c.pods, "pod", p.ID, u, err)
	}
	if p.NetNS == "" {
		return
	}
	ifs, err := c.readNet(p.NetNS)
	if err != nil {
		// The pod may have been stopped since it was listed.
		c.log.Debug("stats: read pod network counters", "pod", p.ID, "error", err)
		return
	}
	c.mu.Lock()
	c.nets[p.ID] = netSample{time: time.Now(), ifs: ifs}
	c.mu.Unlock()
}

// record stores one read in m[id]. A read error leaves a zero sample:
// one vanished or unreadable cgroup must never fail a whole list.
func (c *Collector) record(m map[string]*series, kind, id string, u cgroups.Usage, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := m[id]
	if s == nil {
		s = &series{}
		m[id] = s
	}
	if err != nil {
		if !s.vanished {
			c.log.Warn("stats: cannot read cgroup; reporting zeros", kind, id, "error", err)
		}
		s.vanished = true
		now := time.Now()
		s.latest, s.cpu, s.has = cgroups.Usage{Time: now}, cgroups.CPUSample{Time: now}, true
		return
	}
	s.vanished = false
	s.add(u)
}

// add makes u the latest full sample and its CPU reading the latest one.
// A sample older than the latest (a slower concurrent read) is dropped.
func (s *series) add(u cgroups.Usage) {
	if s.has && !u.Time.After(s.latest.Time) {
		return
	}
	s.latest, s.has = u, true
	s.addCPU(cgroups.CPUSample{Time: u.Time, Nanos: u.CPUNanos})
}

// addCPU makes cs the latest CPU reading, unless a newer one is there
// already, and puts it into the ring unless the newest ring entry is
// younger than ringSpacing.
func (s *series) addCPU(cs cgroups.CPUSample) {
	if !cs.Time.After(s.cpu.Time) {
		return
	}
	s.cpu = cs
	if s.n > 0 && cs.Time.Sub(s.ring[s.head].Time) < ringSpacing {
		return
	}
	s.head = (s.head + 1) % ringSize
	s.ring[s.head] = cs
	s.n = min(s.n+1, ringSize)
}

// rate is the CPU use in nanocores between the latest CPU reading and
// the newest ring entry at least minWindow older; false when there is
// none or the counter went backwards (the cgroup was recreated).
func (s *series) rate() (uint64, bool) {
	if !s.has || s.vanished {
		return 0, false
	}
	for i := range s.n {
		old := s.ring[(s.head-i+ringSize)%ringSize]
		dt := s.cpu.Time.Sub(old.Time)
		if dt < minWindow {
			continue
		}
		if s.cpu.Nanos < old.Nanos {
			return 0, false
		}
		return uint64(float64(s.cpu.Nanos-old.Nanos) / dt.Seconds()), true
	}
	return 0, false
}

// reading is what s reports now; a nil s (never sampled) reports zeros.
func (s *series) reading() reading {
	if s == nil {
		now := time.Now()
		return reading{usage: cgroups.Usage{Time: now}, cpu: cgroups.CPUSample{Time: now}}
	}
	r := reading{usage: s.latest, cpu: s.cpu}
	r.rate, r.rateOK = s.rate()
	return r
}

// wantLayer queues a measurement of the writable layer when the last
// one is too old and none is under way.
func (c *Collector) wantLayer(storageID string) {
	if c.opts.Layers == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.layers[storageID]
	if e == nil {
		e = &layerEntry{}
		c.layers[storageID] = e
	}
	if e.measuring || (e.ok && time.Since(e.usage.Time) < max(c.period, minLayerAge)) {
		return
	}
	select {
	case c.queue <- storageID:
		e.measuring = true
	default: // full: asked again at the next sample
	}
}

// layerWorker measures queued writable layers one at a time.
func (c *Collector) layerWorker() {
	defer c.done.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case id := <-c.queue:
			u, err := c.opts.Layers.LayerUsage(c.ctx, id)
			c.mu.Lock()
			if e := c.layers[id]; e != nil {
				e.measuring = false
				if err == nil {
					e.usage, e.ok = u, true
				}
			}
			c.mu.Unlock()
			if err != nil && c.ctx.Err() == nil {
				c.log.Debug("stats: measure writable layer", "storage_id", id, "error", err)
			}
		}
	}
}

// layer returns the last measurement of a writable layer.
func (c *Collector) layer(storageID string) (LayerUsage, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.layers[storageID]; e != nil && e.ok {
		return e.usage, true
	}
	return LayerUsage{}, false
}
