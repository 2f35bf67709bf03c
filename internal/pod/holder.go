package pod

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/idmap"
	"github.com/berth-cri/berth/internal/runtime"
)

// PauseBinary is the name of berth's static pause program, looked for
// next to berthd, then in PATH and /usr/libexec/berth.
const PauseBinary = "berth-pause"

// holderRuntime runs PID-namespace holders: berth's static pause program
// under conmon + runc, from a rootfs berth makes itself (one directory
// with one binary), so no pause image is ever pulled.
type holderRuntime struct {
	cfg  func() *config.Config
	root string // <state_dir>/pause
	log  *slog.Logger
	// mon runs holders under conmon; exits receives their exits.
	mon   Conmon
	oci   func(runtime.OCI) OCIRuntime
	exits *runtime.Owner

	rootfsMu sync.Mutex
	rootfsOK bool
}

func (h *holderRuntime) runtime(handler string) (runtime.OCI, error) {
	cfg := h.cfg()
	_, hd, err := cfg.Handler(handler)
	if err != nil {
		return runtime.OCI{}, fmt.Errorf("runtime handler: %w", err)
	}
	return runtime.ForHandler(cfg, hd), nil
}

// rootfs makes <root>/rootfs with the pause binary as /pause, once per
// daemon (and again whenever the installed binary changes).
func (h *holderRuntime) rootfs() (string, error) {
	h.rootfsMu.Lock()
	defer h.rootfsMu.Unlock()
	rootfs := filepath.Join(h.root, "rootfs")
	if h.rootfsOK {
		return rootfs, nil
	}
	src, err := findPause()
	if err != nil {
		return "", err
	}
	for _, d := range []string{"proc", "dev", "sys"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return "", fmt.Errorf("pause rootfs: %w", err)
		}
	}
	if err := copyIfChanged(src, filepath.Join(rootfs, "pause")); err != nil {
		return "", fmt.Errorf("pause rootfs: %w", err)
	}
	h.rootfsOK = true
	return rootfs, nil
}

func findPause() (string, error) {
	var candidates []string
	if exe, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(exe), PauseBinary))
	}
	if p, err := exec.LookPath(PauseBinary); err == nil {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, "/usr/libexec/berth/"+PauseBinary, "/usr/local/libexec/berth/"+PauseBinary)
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && fi.Mode().IsRegular() {
			return c, nil
		}
	}
	return "", fmt.Errorf("shared PID namespace needs the %s binary (looked in %v): %w", PauseBinary, candidates, errdefs.ErrFailedPrecondition)
}

func copyIfChanged(src, dst string) error {
	si, err := os.Stat(src)
	if err != nil {
		return err
	}
	if di, err := os.Stat(dst); err == nil && di.Size() == si.Size() && di.ModTime().Equal(si.ModTime()) {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Chtimes(tmp, si.ModTime(), si.ModTime()); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// start runs the holder of pod rec and returns it running.
func (h *holderRuntime) start(ctx context.Context, rec *record) (ho *Holder, err error) {
	if h.mon == nil {
		return nil, fmt.Errorf("linux.security_context.namespace_options.pid POD: shared PID namespaces need the container monitor, which is not available: %w", errdefs.ErrFailedPrecondition)
	}
	rt, err := h.runtime(rec.RuntimeHandler)
	if err != nil {
		return nil, err
	}
	rootfs, err := h.rootfs()
	if err != nil {
		return nil, err
	}
	// runc 1.1 mounts the rootfs of a holder in a user namespace from
	// inside it, whose root cannot search berth's state dir: the holder
	// runs from a bind of it in a directory that root can reach.
	pauseRootfs, reachDir := rootfs, filepath.Join(idmap.Root(h.cfg().Berth.RunDir), rec.ID)
	if rec.UserNS != nil {
		rootfs = filepath.Join(reachDir, "rootfs")
	}
	bundle := filepath.Join(rec.RunDir, "holder")
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return nil, fmt.Errorf("holder bundle: %w", err)
	}
	spec := holderSpec(rec, rootfs, h.cfg().Berth.Runtime.CgroupManager == "systemd")
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("holder spec: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
		return nil, fmt.Errorf("holder spec: %w", err)
	}
	ho = &Holder{ContainerID: rec.ID, BundleDir: bundle}
	defer func() {
		if err != nil {
			_ = h.remove(context.WithoutCancel(ctx), rec.RuntimeHandler, ho)
		}
	}()
	if rec.UserNS != nil {
		if err := idmap.SearchableDir(reachDir, h.cfg().Berth.RunDir); err != nil {
			return ho, fmt.Errorf("PID namespace holder: %w", err)
		}
		if err := idmap.Bind(pauseRootfs, rootfs); err != nil {
			return ho, fmt.Errorf("PID namespace holder: %w", err)
		}
	}
	created, err := h.mon.Create(ctx, &runtime.CreateOptions{
		ID: ho.ContainerID, Name: "pause_" + rec.Metadata.Name + "_" + rec.Metadata.Namespace,
		Bundle: bundle, PersistDir: bundle, LogPath: filepath.Join(bundle, "pause.log"), Runtime: rt, Owner: h.exits,
	})
	if err != nil {
		return ho, fmt.Errorf("create PID namespace holder: %w", err)
	}
	ho.Pid = created.Container.PID
	if err := h.oci(rt).Start(ctx, ho.ContainerID); err != nil {
		return ho, fmt.Errorf("start PID namespace holder: %w", err)
	}
	return ho, nil
}

// remove kills and deletes a holder; every step tolerates a holder that
// is already gone, so Stop and Remove can repeat it.
func (h *holderRuntime) remove(ctx context.Context, handler string, ho *Holder) error {
	rt, err := h.runtime(handler)
	if err != nil {
		return err
	}
	// Kill, then wait for the exit on the holder's pidfd: runc delete
	// --force alone would sleep in 100 ms steps until it is gone.
	proc, perr := runtime.NewProc(ho.Pid)
	if err := h.oci(rt).Kill(ctx, ho.ContainerID, syscall.SIGKILL, false); err != nil && !errors.Is(err, runtime.ErrNotExist) {
		h.log.Debug("kill holder", "id", ho.ContainerID, "error", err)
	}
	if perr == nil {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = proc.WaitExit(wctx)
		cancel()
	}
	if err := h.oci(rt).Delete(ctx, ho.ContainerID, true); err != nil {
		return fmt.Errorf("delete PID namespace holder: %w", err)
	}
	if ho.BundleDir != "" {
		_ = os.RemoveAll(ho.BundleDir)
	}
	// The holder of a pod in a user namespace ran from a bind of the
	// pause rootfs, named by the pod.
	if err := idmap.Release(filepath.Join(idmap.Root(h.cfg().Berth.RunDir), ho.ContainerID)); err != nil {
		return fmt.Errorf("PID namespace holder: %w", err)
	}
	if h.exits != nil {
		h.exits.Release(ho.ContainerID)
	}
	return nil
}

// holderSpec is the OCI config of a holder: /pause as PID 1 of a new PID
// namespace, joined to the pod's pinned namespaces, read-only root, no
// capabilities. It is output only; nothing is ever read back from it.
func holderSpec(rec *record, rootfs string, systemd bool) *specs.Spec {
	ns := []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}}
	if p := rec.NSPaths.Net; p != "" {
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: p})
	}
	if p := rec.NSPaths.IPC; p != "" {
		ns = append(ns, specs.LinuxNamespace{Type: specs.IPCNamespace, Path: p})
	}
	if p := rec.NSPaths.UTS; p != "" {
		ns = append(ns, specs.LinuxNamespace{Type: specs.UTSNamespace, Path: p})
	}
	if p := rec.NSPaths.User; p != "" && rec.UserNS != nil {
		// The holder's PID namespace must be owned by the pod's user
		// namespace, or its containers could not mount their /proc.
		ns = append(ns, specs.LinuxNamespace{Type: specs.UserNamespace, Path: p})
	}
	cgroupsPath := filepath.Join(rec.CgroupParent, "berth-pause-"+rec.ID)
	if systemd {
		cgroupsPath = rec.CgroupParent + ":berth-pause:" + rec.ID
	}
	s := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Args:            []string{"/pause"},
			Cwd:             "/",
			Env:             []string{"PATH=/"},
			NoNewPrivileges: true,
			Capabilities:    &specs.LinuxCapabilities{},
		},
		Root: &specs.Root{Path: rootfs, Readonly: true},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "noexec", "strictatime", "mode=755", "size=64k"}},
		},
		Linux: &specs.Linux{
			Namespaces:    ns,
			CgroupsPath:   cgroupsPath,
			Resources:     &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}},
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
	if rec.UserNS != nil {
		s.Linux.UIDMappings = idmap.OCI(rec.UserNS.UIDs)
		s.Linux.GIDMappings = idmap.OCI(rec.UserNS.GIDs)
	}
	return s
}
