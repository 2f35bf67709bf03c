package nri

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/ttrpc"
)

// pluginTable follows the plugins through the adaptation's metrics
// hooks, the one place the module names them: a plugin is added when its
// synchronization succeeds and dropped when a request to it fails in a
// way that makes the adaptation close it (timeout, lost connection). The
// adaptation's own count is kept too: a plugin that went away while idle
// is only noticed (by the adaptation as well) at the next event.
type pluginTable struct {
	log     *slog.Logger
	mu      sync.Mutex
	plugins map[string]*pluginEntry
	count   int
}

// pluginEntry is what is known of the plugins of one IDX-NAME: the
// adaptation lets a second plugin register with a name already in use,
// and both get events.
type pluginEntry struct {
	connectedAt time.Time
	n           int
}

var _ adaptation.Metrics = (*pluginTable)(nil)

func newPluginTable(log *slog.Logger) *pluginTable {
	return &pluginTable{log: log, plugins: map[string]*pluginEntry{}}
}

func (t *pluginTable) RecordPluginInvocation(name, op string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case err == nil && op == "Synchronize":
		e := t.plugins[name]
		if e == nil {
			t.plugins[name] = &pluginEntry{connectedAt: time.Now(), n: 1}
			return
		}
		// The adaptation has no say on names; berth can only tell.
		e.n++
		t.log.Error("NRI: a plugin registered with the name and index of one already connected; both get every event",
			"plugin", name, "connected", e.n)
	case err != nil && closesPlugin(err):
		t.log.Error("NRI: plugin disconnected: its request failed", "plugin", name, "event", op, "error", err)
		if e := t.plugins[name]; e != nil {
			if e.n--; e.n <= 0 {
				delete(t.plugins, name)
			}
		}
	}
}

// closesPlugin mirrors the errors on which the adaptation drops a plugin.
func closesPlugin(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ttrpc.ErrClosed) ||
		errors.Is(err, ttrpc.ErrServerClosed) || errors.Is(err, ttrpc.ErrProtocol)
}

func (t *pluginTable) RecordPluginLatency(string, string, time.Duration) {}

func (t *pluginTable) RecordPluginAdjustments(string, string, *adaptation.ContainerAdjustment, int, int) {
}

func (t *pluginTable) UpdatePluginCount(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.count = n
	if n == 0 {
		clear(t.plugins)
	}
}

// active reports whether the adaptation has any plugin.
func (t *pluginTable) active() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.count > 0
}

// list returns the plugins by name (IDX-NAME, the invocation order).
func (t *pluginTable) list() ([]PluginInfo, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]PluginInfo, 0, len(t.plugins))
	for name, e := range t.plugins {
		out = append(out, PluginInfo{Name: name, ConnectedAt: e.connectedAt, Connections: e.n})
	}
	slices.SortFunc(out, func(a, b PluginInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, t.count
}
