package nri

import (
	"context"
	"errors"
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
	mu      sync.Mutex
	plugins map[string]time.Time
	count   int
}

var _ adaptation.Metrics = (*pluginTable)(nil)

func newPluginTable() *pluginTable { return &pluginTable{plugins: map[string]time.Time{}} }

func (t *pluginTable) RecordPluginInvocation(name, op string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case err == nil && op == "Synchronize":
		t.plugins[name] = time.Now()
	case err != nil && closesPlugin(err):
		delete(t.plugins, name)
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
	for name, at := range t.plugins {
		out = append(out, PluginInfo{Name: name, ConnectedAt: at})
	}
	slices.SortFunc(out, func(a, b PluginInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, t.count
}
