// Package nsmgr pins a pod's network, IPC and UTS namespaces (and, for a
// pod with hostUsers: false, its user namespace, which then owns the
// others) so they outlive any process: berthd re-executes itself (the
// hidden ChildCommand) with clone flags for the new namespaces; the
// child sets the hostname, brings loopback up, applies the pod's sysctls
// and bind-mounts /proc/self/ns/<kind> under the run dir (in a user
// namespace it cannot mount on the host, so berthd binds
// /proc/<child>/ns/<kind> itself, see userns.go). Nothing else in berth
// needs an external pinns binary.
package nsmgr

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/idmap"
)

// ChildCommand is the hidden first argument that makes berthd act as the
// pinning helper; cmd/berthd checks it before anything else runs.
const ChildCommand = "__pin-namespaces"

// Exit codes of the helper: exitBadSysctl tells the parent that the
// kernel refused a sysctl, which is the caller's fault, not berth's.
const (
	exitFailure   = 1
	exitBadSysctl = 3
)

// Kinds of namespace that can be pinned.
const (
	Net = "net"
	IPC = "ipc"
	UTS = "uts"
	// User is the pod's user namespace; it owns the others.
	User = "user"
)

// Request says which namespaces to create for pod ID and how to set
// them up. Sysctls must have been validated by the caller: they are
// written as given, inside the new namespaces only.
type Request struct {
	ID       string
	Net      bool
	IPC      bool
	UTS      bool
	Hostname string
	Sysctls  map[string]string
	// UserNS, when set, puts the pod in a new user namespace with these
	// mappings (validated by the caller), created first so that it owns
	// the pod's other namespaces.
	UserNS *idmap.Mappings
}

// Paths are the bind mounts of the pinned namespaces; "" for a namespace
// that was not pinned (the pod shares the host's).
type Paths struct {
	Net string `json:"net,omitempty"`
	IPC string `json:"ipc,omitempty"`
	UTS string `json:"uts,omitempty"`
	// User is "" for a pod in the host's user namespace.
	User string `json:"user,omitempty"`
}

// all lists the pinned paths; the user namespace last, since it owns
// the others.
func (p Paths) all() []string { return []string{p.Net, p.IPC, p.UTS, p.User} }

// childSpec is what the parent sends the helper on stdin. JSON keeps
// hostile values (already rejected upstream) from ever being parsed as
// arguments.
type childSpec struct {
	Hostname string            `json:"hostname,omitempty"`
	Sysctls  map[string]string `json:"sysctls,omitempty"`
	Targets  map[string]string `json:"targets"`
	// ParentBinds: the child is in a new user namespace and cannot mount
	// on the host; it reports ready on stdout and waits for stdin to
	// close while berthd binds its namespaces.
	ParentBinds bool `json:"parent_binds,omitempty"`
}

// Manager pins and unpins namespaces under root (<run_dir>/ns).
type Manager struct {
	root string
	exe  string
	log  *slog.Logger
}

// New returns a Manager keeping its mounts under root. The helper is
// this very binary, reached through /proc/self/exe so an upgrade of the
// file on disk cannot mix versions.
func New(root string, log *slog.Logger) *Manager {
	return &Manager{root: root, exe: "/proc/self/exe", log: log}
}

// Path returns where namespace kind of pod id is (or would be) pinned.
func (m *Manager) Path(kind, id string) string {
	return filepath.Join(m.root, kind, id)
}

// Pin creates the requested namespaces for req.ID. On failure nothing is
// left behind: no mount, no file.
func (m *Manager) Pin(ctx context.Context, req Request) (Paths, error) {
	if req.ID == "" || strings.ContainsAny(req.ID, "/\x00") || req.ID == "." || req.ID == ".." {
		return Paths{}, fmt.Errorf("pin namespaces: bad id %q: %w", req.ID, errdefs.ErrInvalidArgument)
	}
	var (
		paths Paths
		flags uintptr
		spec  = childSpec{Targets: map[string]string{}, Sysctls: req.Sysctls}
	)
	add := func(kind string, flag uintptr, dst *string) {
		*dst = m.Path(kind, req.ID)
		spec.Targets[kind] = *dst
		flags |= flag
	}
	if req.Net {
		add(Net, unix.CLONE_NEWNET, &paths.Net)
	}
	if req.IPC {
		add(IPC, unix.CLONE_NEWIPC, &paths.IPC)
	}
	if req.UTS {
		add(UTS, unix.CLONE_NEWUTS, &paths.UTS)
		spec.Hostname = req.Hostname
	}
	if req.UserNS != nil {
		if flags == 0 {
			return Paths{}, fmt.Errorf("a user namespace needs pod network and IPC namespaces it owns: %w", errdefs.ErrInvalidArgument)
		}
		add(User, unix.CLONE_NEWUSER, &paths.User)
		spec.ParentBinds = true
	}
	if flags == 0 {
		if len(req.Sysctls) > 0 {
			return Paths{}, fmt.Errorf("sysctls need a pod namespace to apply to: %w", errdefs.ErrInvalidArgument)
		}
		return paths, nil
	}
	for kind, p := range spec.Targets {
		if err := createTarget(p); err != nil {
			_ = m.Unpin(paths)
			return Paths{}, fmt.Errorf("pin %s namespace: %w", kind, err)
		}
	}
	run := m.runChild
	if req.UserNS != nil {
		run = func(ctx context.Context, flags uintptr, spec childSpec) error {
			return m.runUserNSChild(ctx, flags, spec, *req.UserNS)
		}
	}
	if err := run(ctx, flags, spec); err != nil {
		if uerr := m.Unpin(paths); uerr != nil {
			m.log.Warn("undo namespace pinning", "id", req.ID, "error", uerr)
		}
		return Paths{}, err
	}
	return paths, nil
}

// createTarget makes the empty file a namespace is bind-mounted on. A
// leftover from a crash is unmounted and reused.
func createTarget(p string) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	_ = unix.Unmount(p, unix.MNT_DETACH)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o444)
	if err != nil {
		return err
	}
	return f.Close()
}

func (m *Manager) runChild(ctx context.Context, flags uintptr, spec childSpec) error {
	in, err := json.Marshal(spec)
	if err != nil {
		return fmt.Errorf("encode pinning request: %w", err)
	}
	cmd := exec.CommandContext(ctx, m.exe, ChildCommand)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags}
	err = cmd.Run()
	if err == nil {
		return nil
	}
	msg := strings.TrimSpace(stderr.String())
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == exitBadSysctl {
		return fmt.Errorf("pin namespaces: %s: %w", msg, errdefs.ErrInvalidArgument)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("pin namespaces: %w", ctx.Err())
	}
	if msg != "" {
		return fmt.Errorf("pin namespaces: %w: %s", err, msg)
	}
	return fmt.Errorf("pin namespaces: %w", err)
}

// Unpin unmounts and removes the pinned namespaces in paths. It is
// idempotent: missing or already unmounted paths are fine. The kernel
// frees a namespace once its last mount and process are gone.
func (m *Manager) Unpin(paths Paths) error {
	var errs []error
	for _, p := range paths.all() {
		if p == "" {
			continue
		}
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// IsPinned reports whether p is a live namespace mount (an nsfs file).
func (*Manager) IsPinned(p string) bool {
	if p == "" {
		return false
	}
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}
