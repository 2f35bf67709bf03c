// Package network attaches pods to a CNI network through libcni. The
// config dir is watched with fsnotify and re-read lazily, on the first
// use after a change, so the daemon starts without touching it and a
// config dropped in later flips NetworkReady without a restart.
package network

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/fsnotify/fsnotify"
)

// DefaultTimeout bounds one CNI ADD or DEL of a whole plugin chain.
const DefaultTimeout = 2 * time.Minute

// Options configure a Manager; they come from [berth.network].
type Options struct {
	ConfDir        string
	PluginDirs     []string
	DefaultNetwork string
	// CacheDir is libcni's result cache, kept under berth's state dir so
	// a DEL after a restart uses the exact config of the ADD.
	CacheDir string
	Timeout  time.Duration
}

// Manager runs CNI ADD/DEL for pods. It is safe for concurrent use and
// holds no lock while a plugin runs.
type Manager struct {
	opts    Options
	log     *slog.Logger
	cni     *libcni.CNIConfig
	watcher *fsnotify.Watcher
	done    chan struct{}
	wg      sync.WaitGroup

	// dirty is set by the watcher; the next reader reloads. loadMu only
	// serialises reloads, never a plugin call.
	dirty   atomic.Bool
	loadMu  sync.Mutex
	state   atomic.Pointer[netState]
	podCIDR atomic.Pointer[string]
}

// netState is one load of the config dir: the chosen network or why
// there is none.
type netState struct {
	list   *libcni.NetworkConfigList
	file   string
	reason string
}

// New returns a Manager and starts watching opts.ConfDir (created if
// missing). Nothing is read until the first Status or Setup.
func New(opts Options, log *slog.Logger) *Manager {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	m := &Manager{
		opts: opts,
		log:  log,
		cni:  libcni.NewCNIConfigWithCacheDir(opts.PluginDirs, opts.CacheDir, pluginExec{}),
		done: make(chan struct{}),
	}
	m.dirty.Store(true)
	if err := m.watch(); err != nil {
		// Without a watch every use re-reads the dir; slower, still right.
		log.Warn("cannot watch CNI config dir; it will be re-read on every use", "dir", opts.ConfDir, "error", err)
	}
	return m
}

func (m *Manager) watch() error {
	if err := os.MkdirAll(m.opts.ConfDir, 0o755); err != nil {
		return err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	if err := w.Add(m.opts.ConfDir); err != nil {
		w.Close()
		return err
	}
	m.watcher = w
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			select {
			case <-m.done:
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				m.log.Debug("CNI config dir changed", "event", ev.String())
				m.dirty.Store(true)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				// An overflow may have lost events: reload to be safe.
				m.log.Warn("CNI config watch", "error", err)
				m.dirty.Store(true)
			}
		}
	}()
	return nil
}

// Close stops the watcher.
func (m *Manager) Close() error {
	if m.watcher == nil {
		return nil
	}
	close(m.done)
	err := m.watcher.Close()
	m.wg.Wait()
	return err
}

// current returns the loaded network state, reloading it first when the
// dir changed (or always, when it cannot be watched).
func (m *Manager) current() *netState {
	// Only a usable network is cached: a config that names a plugin not
	// installed yet must become ready once the plugin appears, and the
	// plugin dirs are not watched.
	if m.watcher != nil && !m.dirty.Load() {
		if st := m.state.Load(); st != nil && st.list != nil {
			return st
		}
	}
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	if st := m.state.Load(); m.watcher == nil || m.dirty.Swap(false) || st == nil || st.list == nil {
		st := m.load()
		prev := m.state.Swap(st)
		if prev == nil || prev.file != st.file || prev.reason != st.reason {
			if st.list != nil {
				m.log.Info("CNI network loaded", "network", st.list.Name, "file", st.file)
			} else {
				m.log.Info("no usable CNI network", "reason", st.reason)
			}
		}
	}
	return m.state.Load()
}

// load reads the config dir in name order and picks the default network,
// or the first valid one when none is configured.
func (m *Manager) load() *netState {
	files, err := libcni.ConfFiles(m.opts.ConfDir, []string{".conf", ".conflist", ".json"})
	if err != nil {
		return &netState{reason: fmt.Sprintf("read CNI config dir %s: %v", m.opts.ConfDir, err)}
	}
	slices.Sort(files)
	var problems []string
	for _, f := range files {
		list, err := loadFile(f)
		if err == nil {
			err = m.checkPlugins(list)
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", filepath.Base(f), err))
			continue
		}
		if m.opts.DefaultNetwork != "" && list.Name != m.opts.DefaultNetwork {
			continue
		}
		return &netState{list: list, file: f}
	}
	var reason string
	switch {
	case m.opts.DefaultNetwork != "":
		reason = fmt.Sprintf("CNI network %q not found in %s", m.opts.DefaultNetwork, m.opts.ConfDir)
	default:
		reason = fmt.Sprintf("no CNI configuration file in %s", m.opts.ConfDir)
	}
	if len(problems) > 0 {
		reason += " (skipped: " + strings.Join(problems, "; ") + ")"
	}
	return &netState{reason: reason}
}

func loadFile(f string) (*libcni.NetworkConfigList, error) {
	if strings.HasSuffix(f, ".conflist") {
		return libcni.NetworkConfFromFile(f)
	}
	conf, err := libcni.ConfFromFile(f)
	if err != nil {
		return nil, err
	}
	return libcni.ConfListFromConf(conf)
}

// checkPlugins makes sure every plugin binary exists, so a config naming
// a missing plugin leaves the network not ready instead of failing pods.
func (m *Manager) checkPlugins(list *libcni.NetworkConfigList) error {
	if len(list.Plugins) == 0 {
		return errors.New("no plugins")
	}
	for _, p := range list.Plugins {
		if _, err := invoke.FindInPath(p.Network.Type, m.opts.PluginDirs); err != nil {
			return fmt.Errorf("plugin %q: %w", p.Network.Type, err)
		}
	}
	return nil
}

// Status reports whether a CNI network is loaded, as the NetworkReady
// condition wants it.
func (m *Manager) Status() (ready bool, reason, message string) {
	st := m.current()
	if st.list == nil {
		return false, "NetworkPluginNotReady", "Network plugin returns error: " + st.reason
	}
	return true, "", ""
}

// NetworkName is the network pods are attached to now, or "".
func (m *Manager) NetworkName() string {
	if st := m.current(); st.list != nil {
		return st.list.Name
	}
	return ""
}
