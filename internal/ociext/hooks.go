package ociext

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"go.podman.io/common/pkg/hooks"
	hook "go.podman.io/common/pkg/hooks/1.0.0"
)

// hookSet holds the hooks of the hook dirs, parsed and validated by the
// containers hooks package; a file in a later dir replaces one of the
// same name in an earlier dir (hooks.d semantics). The dirs are watched
// and every change re-reads all of them.
type hookSet struct {
	dirs    []string
	log     *slog.Logger
	watcher *fsnotify.Watcher
	done    chan struct{}

	mu     sync.RWMutex
	hooks  map[string]loadedHook // by file name
	errors map[string]string     // by path
}

type loadedHook struct {
	path string
	hook *hook.Hook
}

func newHookSet(dirs []string, log *slog.Logger) *hookSet {
	h := &hookSet{dirs: slices.Clone(dirs), log: log, done: make(chan struct{})}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Error("hook dirs are not watched", "error", err)
	}
	h.watcher = w
	for _, d := range h.dirs {
		// As CRI-O does, a missing hook dir is created, so that it can be
		// watched and a hook dropped into it later is seen.
		if err := os.MkdirAll(d, 0o755); err != nil {
			log.Warn("hook dir", "dir", d, "error", err)
			continue
		}
		if w != nil {
			if err := w.Add(d); err != nil {
				log.Warn("hook dir is not watched", "dir", d, "error", err)
			}
		}
	}
	h.reload()
	if w != nil {
		go h.watch()
	} else {
		close(h.done)
	}
	return h
}

func (h *hookSet) close() {
	if h.watcher != nil {
		h.watcher.Close()
	}
	<-h.done
}

// settle is how long the hook dirs must be quiet before a reload: a file
// being written shows as a create then writes, and reading it after the
// create alone would report a half-written hook as broken.
const settle = 100 * time.Millisecond

func (h *hookSet) watch() {
	defer close(h.done)
	timer := time.NewTimer(settle)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-h.watcher.Events:
			if !ok {
				return
			}
			if ev.Op&(fsnotify.Create|fsnotify.Write|fsnotify.Remove|fsnotify.Rename) != 0 {
				timer.Reset(settle)
			}
		case <-timer.C:
			h.reload()
		case err, ok := <-h.watcher.Errors:
			if !ok {
				return
			}
			h.log.Warn("watching hook dirs", "error", err)
		}
	}
}

// reload reads every hook file again; a file that does not parse or
// validate (hooks.Read checks the version, stages, regexps and that the
// hook's path exists) is logged and left out.
func (h *hookSet) reload() {
	loaded := map[string]loadedHook{}
	errs := map[string]string{}
	for _, d := range h.dirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs[d] = err.Error()
			}
			continue
		}
		for _, e := range ents {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
				continue
			}
			p := filepath.Join(d, e.Name())
			hk, err := hooks.Read(p, nil)
			if err != nil {
				if errors.Is(err, os.ErrNotExist) && !fileExists(p) {
					continue // removed while reading
				}
				errs[p] = err.Error()
				continue
			}
			loaded[e.Name()] = loadedHook{path: p, hook: hk}
		}
	}
	h.mu.Lock()
	old := h.errors
	h.hooks, h.errors = loaded, errs
	h.mu.Unlock()
	for p, e := range errs {
		if old[p] != e {
			h.log.Warn("hook skipped", "file", p, "error", e)
		}
	}
	h.log.Debug("hooks loaded", "count", len(loaded), "skipped", len(errs))
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// apply adds the hooks whose conditions match s (its process and its
// annotations, over which the pod's are laid, as CRI-O matches them) to
// s, in the order of their file names, as the hooks package orders them.
// "prestart" goes to createRuntime, where the hooks package puts it
// (prestart is deprecated in the runtime spec).
func (h *hookSet) apply(s *rspec.Spec, podAnnotations map[string]string, hasBindMounts bool) error {
	h.mu.RLock()
	list := make([]string, 0, len(h.hooks))
	for name := range h.hooks {
		list = append(list, name)
	}
	hs := h.hooks
	h.mu.RUnlock()
	if len(list) == 0 {
		return nil
	}
	slices.SortFunc(list, func(a, b string) int { return cmp.Compare(strings.ToLower(a), strings.ToLower(b)) })
	annotations := maps.Clone(s.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	maps.Copy(annotations, podAnnotations)
	for _, name := range list {
		lh := hs[name]
		match, err := lh.hook.When.Match(s, annotations, hasBindMounts)
		if err != nil {
			return fmt.Errorf("matching hook %s: %w", lh.path, err)
		}
		if !match {
			continue
		}
		if s.Hooks == nil {
			s.Hooks = &rspec.Hooks{}
		}
		for _, stage := range lh.hook.Stages {
			switch stage {
			case "prestart", "createRuntime":
				s.Hooks.CreateRuntime = append(s.Hooks.CreateRuntime, lh.hook.Hook)
			case "createContainer":
				s.Hooks.CreateContainer = append(s.Hooks.CreateContainer, lh.hook.Hook)
			case "startContainer":
				s.Hooks.StartContainer = append(s.Hooks.StartContainer, lh.hook.Hook)
			case "poststart":
				s.Hooks.Poststart = append(s.Hooks.Poststart, lh.hook.Hook)
			case "poststop":
				s.Hooks.Poststop = append(s.Hooks.Poststop, lh.hook.Hook)
			default:
				return fmt.Errorf("hook %s: unknown stage %q", lh.path, stage)
			}
		}
	}
	return nil
}

// HooksReport lists the hook dirs, the hooks in force and the files
// skipped with their errors.
type HooksReport struct {
	Dirs   []string          `json:"dirs"`
	Hooks  []HookInfo        `json:"hooks"`
	Errors map[string]string `json:"errors,omitempty"`
}

// HookInfo is one loaded hook.
type HookInfo struct {
	File   string    `json:"file"`
	Path   string    `json:"path"`
	Stages []string  `json:"stages"`
	When   hook.When `json:"when"`
}

func (h *hookSet) report() HooksReport {
	h.mu.RLock()
	defer h.mu.RUnlock()
	rep := HooksReport{Dirs: append([]string{}, h.dirs...), Hooks: []HookInfo{}}
	for _, lh := range h.hooks {
		rep.Hooks = append(rep.Hooks, HookInfo{File: lh.path, Path: lh.hook.Hook.Path, Stages: lh.hook.Stages, When: lh.hook.When})
	}
	slices.SortFunc(rep.Hooks, func(a, b HookInfo) int { return cmp.Compare(a.File, b.File) })
	if len(h.errors) > 0 {
		rep.Errors = make(map[string]string, len(h.errors))
		for p, e := range h.errors {
			rep.Errors[p] = e
		}
	}
	return rep
}
