package container

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cyphar/filepath-securejoin/pathrs-lite"
	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/ident"
	"github.com/berth-cri/berth/internal/image"
	"github.com/berth-cri/berth/internal/objmeta"
	"github.com/berth-cri/berth/internal/oplock"
	"github.com/berth-cri/berth/internal/pod"
	"github.com/berth-cri/berth/internal/runtime"
	"github.com/berth-cri/berth/internal/spec"
	"github.com/berth-cri/berth/internal/tracing"
)

// undo is a stack of cleanups, run in reverse when a pipeline fails.
type undo []func()

func (u *undo) add(f func()) { *u = append(*u, f) }

func (u *undo) run() {
	for i := len(*u) - 1; i >= 0; i-- {
		(*u)[i]()
	}
}

// Create makes a container in pod sb, which the caller has admitted (see
// pod.Manager.Admit): it validates the request, reserves the name,
// creates and mounts the writable layer, writes the spec and the records,
// and has conmon run `runc create`. Any failure unwinds every step. A
// retry with the same name while the first request still runs waits for
// it; if the first request's client gave up, the retry gets the container
// it made. finished is closed once no creation started by this call is
// under way: later than the return when the client gave up, so the
// caller keeps the pod's admission until then.
func (m *Manager) Create(ctx context.Context, sb *pod.Sandbox, cfg *runtimeapi.ContainerConfig) (id string, finished <-chan struct{}, err error) {
	return m.CreateAdjusted(ctx, sb, cfg, nil)
}

// CreateAdjusted is Create with adj run on the finished spec (see
// SpecAdjuster); nil adjusts nothing.
func (m *Manager) CreateAdjusted(ctx context.Context, sb *pod.Sandbox, cfg *runtimeapi.ContainerConfig, adj SpecAdjuster) (id string, finished <-chan struct{}, err error) {
	id, r, err := m.startCreate(ctx, sb, cfg, adj)
	if r == nil {
		return id, closedChan(), err
	}
	return id, r.done, err
}

// startCreate validates, reserves the name and runs the pipeline; r is the
// reservation of a pipeline it started, nil when it started none.
func (m *Manager) startCreate(ctx context.Context, sb *pod.Sandbox, cfg *runtimeapi.ContainerConfig, adj SpecAdjuster) (string, *reservation, error) {
	if cfg == nil || cfg.GetMetadata().GetName() == "" {
		return "", nil, fmt.Errorf("config.metadata.name is required: %w", errdefs.ErrInvalidArgument)
	}
	if err := validName(cfg.GetMetadata().GetName()); err != nil {
		return "", nil, err
	}
	if cfg.GetImage().GetImage() == "" {
		return "", nil, fmt.Errorf("config.image.image is required: %w", errdefs.ErrInvalidArgument)
	}
	if err := spec.Validate(cfg); err != nil {
		return "", nil, err
	}
	if err := objmeta.Check(cfg.GetLabels(), cfg.GetAnnotations(), m.cfg().Berth.API.MaxMetadataSize); err != nil {
		return "", nil, fmt.Errorf("config: %w", err)
	}
	name := fmt.Sprintf("k8s_%s_%s_%s_%s_%d", cfg.GetMetadata().GetName(), sb.Metadata.Name,
		sb.Metadata.Namespace, sb.Metadata.UID, cfg.GetMetadata().GetAttempt())
	res, r, err := m.reserve(ctx, name)
	if err != nil || r == nil {
		return res, nil, err
	}
	// The pipeline outlives the request: when the kubelet gives up and
	// retries, the retry gets the container this request is making
	// rather than a half-made one being undone.
	type result struct {
		id  string
		err error
	}
	done := make(chan result, 1)
	m.goBackground(func() {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
		defer cancel()
		id, err := m.create(pctx, sb, name, cfg, adj)
		m.finishReservation(r, name, id, err)
		done <- result{id, err}
	})
	select {
	case res := <-done:
		return res.id, r, res.err
	case <-ctx.Done():
		m.abandon(r)
		return "", r, fmt.Errorf("create container %s: %w (a retry gets the container once made)", name, ctx.Err())
	}
}

// createTimeout bounds one creation (CRI-O's default is 240 s).
const createTimeout = 4 * time.Minute

// reserve claims name. It returns the reservation when the caller must
// create the container, or else the id of the container an earlier
// request made and nobody has claimed.
func (m *Manager) reserve(ctx context.Context, name string) (string, *reservation, error) {
	for {
		m.mu.Lock()
		r, ok := m.names[name]
		if !ok {
			r = &reservation{done: make(chan struct{})}
			m.names[name] = r
			m.mu.Unlock()
			return "", r, nil
		}
		m.mu.Unlock()
		select {
		case <-r.done:
		case <-ctx.Done():
			return "", nil, fmt.Errorf("waiting for the creation of %s by an earlier request: %w", name, ctx.Err())
		}
		m.mu.Lock()
		if r.err != nil {
			// The earlier attempt failed and released the name; try again.
			m.mu.Unlock()
			continue
		}
		if r.unclaimed {
			r.unclaimed = false
			m.mu.Unlock()
			return r.id, nil, nil
		}
		m.mu.Unlock()
		return "", nil, fmt.Errorf("container name %q is reserved for container %s: %w", name, r.id, errdefs.ErrAlreadyExists)
	}
}

// finishReservation records the outcome of a creation: a failure frees
// the name, a success nobody waited for is left for a retry to claim.
func (m *Manager) finishReservation(r *reservation, name, id string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r.id, r.err = id, err
	if err != nil {
		if m.names[name] == r {
			delete(m.names, name)
		}
	} else if r.abandoned {
		r.unclaimed = true
	}
	close(r.done)
}

// abandon notes that the creator's client has gone.
func (m *Manager) abandon(r *reservation) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r.abandoned = true
	select {
	case <-r.done:
		if r.err == nil {
			r.unclaimed = true
		}
	default:
	}
}

// create is the pipeline proper.
func (m *Manager) create(ctx context.Context, sb *pod.Sandbox, name string, cfg *runtimeapi.ContainerConfig, adj SpecAdjuster) (_ string, err error) {
	conf := m.cfg()
	rc := conf.Berth.Runtime
	handlerName, handler, err := conf.Handler(sb.RuntimeHandler)
	if err != nil {
		return "", fmt.Errorf("pod %s: %w (%w)", sb.ID, err, errdefs.ErrFailedPrecondition)
	}
	if err := m.checkAnnotations(handlerName, cfg.GetAnnotations()); err != nil {
		return "", err
	}
	rt := runtime.ForHandler(conf, handler)
	if spec.WantsRecursiveReadOnly(cfg.GetMounts()) && !m.features.Of(ctx, rt).RecursiveReadOnly {
		return "", fmt.Errorf("recursive_read_only: runtime handler %q (%s) or this kernel cannot make recursive read-only mounts: %w",
			handlerName, handler.RuntimePath, errdefs.ErrFailedPrecondition)
	}
	logPath, err := m.logPath(sb, cfg)
	if err != nil {
		return "", err
	}
	// The image service's errors name the image.
	img, err := m.images.ResolveNamed(ctx, cfg.GetImage().GetImage(), cfg.GetImage().GetUserSpecifiedImage())
	if err != nil {
		return "", err
	}
	store, err := m.layers()
	if err != nil {
		return "", err
	}
	id, err := ident.NewID()
	if err != nil {
		return "", err
	}
	var u undo
	defer func() {
		if err != nil {
			u.run()
		}
	}()
	bg := context.WithoutCancel(ctx)
	log := m.log.With("id", id, "name", name)
	conmonCgroup := m.conmonCgroup(sb, id, rc.CgroupManager)

	// conmon first: it waits at its start pipe, so its exec and cgroup
	// move overlap the writable layer and the spec below. It creates the
	// log file; a failed creation leaves none behind.
	bundle := filepath.Join(m.runDir, id)
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return "", fmt.Errorf("create bundle: %w", err)
	}
	u.add(func() { _ = os.RemoveAll(bundle) })
	recDir, err := m.records.Create(id)
	if err != nil {
		return "", err
	}
	u.add(func() { _ = m.records.Remove(id) })
	if _, serr := os.Stat(logPath); serr != nil {
		u.add(func() { _ = os.Remove(logPath) })
	}
	u.add(func() {
		// Runs last: conmon (if it ran runc) is gone by then.
		if err := m.oci(rt).Delete(bg, id, true); err != nil {
			log.Error("undo: runtime delete", "error", err)
		}
		if err := conmonCgroup.Remove(time.Second); err != nil {
			log.Warn("undo: conmon cgroup", "error", err)
		}
		m.mon.RemoveAttachLink(id)
		m.mon.ClearExit(id)
		m.exits.Release(id)
	})
	pending, err := m.mon.Prepare(&runtime.CreateOptions{
		ID: id, Name: name, Bundle: bundle, PersistDir: recDir, LogPath: logPath, LogSizeMax: rc.LogSizeMax,
		Runtime: rt, Terminal: cfg.GetTty(), Stdin: cfg.GetStdin(), StdinOnce: cfg.GetStdinOnce(), Cgroup: conmonCgroup,
		Owner: m.exits,
	})
	if err != nil {
		return "", err
	}
	started := false
	u.add(func() {
		if !started {
			pending.Abort()
		}
	})

	// Writable layer.
	tLayer := time.Now()
	ctrMeta, _ := json.Marshal(map[string]string{"pod-id": sb.ID, "name": name, "image": img.ID})
	if _, err := store.CreateContainer(id, nil, img.ID, "", string(ctrMeta), nil); err != nil {
		return "", fmt.Errorf("create writable layer from image %s: %w", img.ID, err)
	}
	u.add(func() {
		if err := store.DeleteContainer(id); err != nil {
			log.Error("undo: delete storage container", "error", err)
		}
	})
	rootfs, err := store.Mount(id, "")
	if err != nil {
		return "", fmt.Errorf("mount writable layer: %w", err)
	}
	u.add(func() {
		if _, err := store.Unmount(id, true); err != nil {
			log.Error("undo: unmount", "error", err)
		}
	})

	layerTook := time.Since(tLayer)
	tracing.Record(ctx, "storage: writable layer mount", tLayer, attribute.String("container.id", id))

	volumes, err := m.mountImageVolumes(ctx, id, cfg, &u)
	if err != nil {
		return "", err
	}

	// OCI spec.
	targetNS, err := m.targetPIDNS(sb.ID, cfg)
	if err != nil {
		return "", err
	}
	shm := sb.ShmPath
	if shm == "" && sb.Namespaces.IPC == pod.ModeNode {
		// The host's IPC namespace goes with the host's /dev/shm.
		shm = "/dev/shm"
	}
	gen, err := spec.Generate(&spec.Input{
		ID: id, Config: cfg, Image: img.Config.Config, RootFS: rootfs, TargetPIDNS: targetNS, Host: m.host,
		ImageVolumes: volumes.sources(),
		Sandbox: spec.Sandbox{
			ID: sb.ID, Hostname: sb.Hostname, NetNS: sb.NetNS, IPCNS: sb.IPCNS, UTSNS: sb.UTSNS, PIDNS: sb.PIDNS,
			CgroupParent: sb.CgroupParent, ShmPath: shm, ResolvConfPath: sb.ResolvConfPath,
			HostnamePath: sb.HostnamePath, HostsPath: sb.HostsPath, UserNS: sb.UserNS, IDMappings: sb.IDMappings,
		},
		Options: spec.Options{DefaultCaps: rc.DefaultCaps, PidsLimit: rc.PidsLimit, CgroupManager: rc.CgroupManager,
			SeccompDefault: m.seccomp, AppArmorDefault: rc.AppArmorProfile},
	})
	if err != nil {
		return "", err
	}
	if err := m.apparmor.ensure(ctx, gen.Spec.Process.ApparmorProfile, rc.AppArmorProfile); err != nil {
		return "", err
	}
	m.logAdapted(gen.Adapted)
	if err := m.applyExtensions(gen.Spec, sb, cfg); err != nil {
		return "", err
	}
	// NRI plugins see, and adjust, the spec with the node's extensions in.
	if adj != nil {
		if err := adj.AdjustSpec(ctx, id, gen.Spec); err != nil {
			return "", err
		}
	}
	if err := makeDirs(rootfs, gen); err != nil {
		return "", err
	}
	if sb.UserNS != "" {
		if err := m.idmapContainer(ctx, id, sb, rt, handlerName, rootfs, store, volumes, gen.Spec, &u); err != nil {
			return "", err
		}
	}

	// Bundle and record, then release conmon to run `runc create`.
	specJSON, err := json.Marshal(gen.Spec)
	if err != nil {
		return "", fmt.Errorf("encode spec: %w", err)
	}
	// The bundle is volatile: no fsync needed for config.json.
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), specJSON, 0o600); err != nil {
		return "", fmt.Errorf("write config.json: %w", err)
	}
	meta := m.buildMeta(id, name, sb, cfg, img, handlerName, rt, conmonCgroup, logPath, bundle, gen, volumes)
	if err := m.records.Write(id, metaFile, meta); err != nil {
		return "", err
	}
	started = true
	tStart := time.Now()
	created, err := pending.Start(ctx)
	if err != nil {
		return "", err
	}
	st := Status{State: StateCreated, Conmon: created.Conmon, Init: created.Container,
		Resources: cloneResources(cfg.GetLinux().GetResources())}
	c := &container{meta: meta, op: oplock.New(), st: st, exited: make(chan struct{}), process: gen.Spec.Process}
	if err := m.persist(c); err != nil {
		return "", err
	}
	m.mu.Lock()
	m.ctrs[id] = c
	m.mu.Unlock()
	m.events.Publish(m.event(c, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT))
	// The container may have died already (runc create's init killed):
	// the exit file was then ignored as unknown.
	if _, err := runtime.ReadExit(recDir); err == nil {
		m.goBackground(func() { m.handleExit(id) })
	}
	log.Debug("container created", "conmon", created.Conmon.PID, "pid", created.Container.PID,
		"layer_took", layerTook, "runtime_create_took", time.Since(tStart))
	return id, nil
}

func (m *Manager) buildMeta(id, name string, sb *pod.Sandbox, cfg *runtimeapi.ContainerConfig, img *image.ImageInfo,
	handlerName string, rt runtime.OCI, conmonCgroup *cgroups.Cgroup, logPath, bundle string, gen *spec.Result, volumes imageVolumes) *Meta {
	meta := &Meta{
		Version: recordVersion, ID: id, Name: name, PodID: sb.ID,
		CtrName: cfg.GetMetadata().GetName(), Attempt: cfg.GetMetadata().GetAttempt(),
		Image: ImageRef{
			Image: cfg.GetImage().GetImage(), UserSpecifiedImage: cfg.GetImage().GetUserSpecifiedImage(),
			Annotations: cfg.GetImage().GetAnnotations(), ID: img.ID,
		},
		Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(),
		LogPath: logPath, CreatedAt: time.Now(),
		Handler: handlerName,
		Runtime: rt, ConmonCgroup: conmonCgroup,
		Bundle: bundle, CgroupsPath: gen.Spec.Linux.CgroupsPath,
		StopSignal: stopSignal(cfg.GetStopSignal(), img.Config.Config.StopSignal),
		Tty:        cfg.GetTty(), Stdin: cfg.GetStdin(), StdinOnce: cfg.GetStdinOnce(),
		User: gen.User, StorageID: id,
	}
	// Named as resolved: the repository the container was created from,
	// of the several an image may be stored under.
	meta.Image.Name, meta.Image.Digest = img.Tag, img.RepoDigest
	for _, mt := range cfg.GetMounts() {
		rec := Mount{
			ContainerPath: mt.GetContainerPath(), HostPath: mt.GetHostPath(), Readonly: mt.GetReadonly(),
			SelinuxRelabel: mt.GetSelinuxRelabel(), Propagation: int32(mt.GetPropagation()),
		}
		if v, ok := volumes[mt.GetContainerPath()]; ok {
			rec.Readonly = true
			rec.Image = &ImageVolume{Image: mt.GetImage().GetImage(), ID: v.image.ID, Digest: v.image.Digest, SubPath: mt.GetImageSubPath()}
		}
		meta.Mounts = append(meta.Mounts, rec)
	}
	hostPID := true
	for _, ns := range gen.Spec.Linux.Namespaces {
		if ns.Type == "pid" {
			hostPID = false
		}
	}
	meta.HostPID = hostPID
	return meta
}

// makeDirs creates what the process needs inside the rootfs: the image's
// volumes and the working directory, without following any symlink out
// of the rootfs. A working directory berth creates belongs to the
// process's user, as with CRI-O, so that the process can write there.
func makeDirs(rootfs string, gen *spec.Result) error {
	for _, d := range gen.Volumes {
		if err := pathrs.MkdirAll(rootfs, d, 0o755); err != nil {
			return fmt.Errorf("create volume %s in the container: %w (%w)", d, err, errdefs.ErrInvalidArgument)
		}
	}
	cwd := gen.Spec.Process.Cwd
	if f, err := pathrs.OpenInRoot(rootfs, cwd); err == nil {
		f.Close()
		return nil
	}
	root, err := os.Open(rootfs)
	if err != nil {
		return fmt.Errorf("open rootfs: %w", err)
	}
	defer root.Close()
	h, err := pathrs.MkdirAllHandle(root, cwd, 0o755)
	if err != nil {
		return fmt.Errorf("create working directory %s in the container: %w (%w)", cwd, err, errdefs.ErrInvalidArgument)
	}
	defer h.Close()
	u := gen.Spec.Process.User
	if err := unix.Fchownat(int(h.Fd()), "", int(u.UID), int(u.GID), unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("chown working directory %s: %w", cwd, err)
	}
	return nil
}

// conmonCgroup is where conmon goes (conmon_cgroup = "pod", cgroupfs): a
// cgroup of its own under the pod's parent, accounted to the pod.
func (m *Manager) conmonCgroup(sb *pod.Sandbox, id, cgroupManager string) *cgroups.Cgroup {
	if cgroupManager == "systemd" || m.cfg().Berth.Runtime.ConmonCgroup != "pod" {
		return nil
	}
	parent := sb.CgroupParent
	if parent == "" {
		parent = cgroups.DefaultParent
	}
	return m.hier.For(filepath.Join(parent, cgroups.ConmonCgroupName(id)))
}

// logPath is where conmon writes the container's CRI log: the request's
// log_path under the pod's log directory (berth's log_dir/<pod> when the
// pod names none). It must stay inside that directory.
func (m *Manager) logPath(sb *pod.Sandbox, cfg *runtimeapi.ContainerConfig) (string, error) {
	dir := sb.LogDirectory
	if dir == "" {
		dir = filepath.Join(m.cfg().Berth.LogDir, sb.ID)
	}
	rel := cfg.GetLogPath()
	if rel == "" {
		rel = fmt.Sprintf("%s_%d.log", cfg.GetMetadata().GetName(), cfg.GetMetadata().GetAttempt())
	}
	p := rel
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, rel)
	}
	p = filepath.Clean(p)
	if !strings.HasPrefix(p, filepath.Clean(dir)+"/") {
		return "", fmt.Errorf("log_path %q is outside the pod's log directory %s: %w", rel, dir, errdefs.ErrInvalidArgument)
	}
	// conmon splits its -l argument at ':' (driver:path).
	if strings.ContainsAny(p, ":\x00\n") {
		return "", fmt.Errorf("log_path %q contains ':' or a control character: %w", rel, errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", fmt.Errorf("create log directory: %w", err)
	}
	return p, nil
}

func (m *Manager) checkAnnotations(handler string, annots map[string]string) error {
	var allowed []string
	if m.allowed != nil {
		allowed = m.allowed(handler)
	}
	return objmeta.CheckBehaviour(annots, handler, allowed)
}

// targetPIDNS resolves the TARGET pid mode: the target container must
// run, and its init's PID namespace is joined.
func (m *Manager) targetPIDNS(podID string, cfg *runtimeapi.ContainerConfig) (string, error) {
	opts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	if opts.GetPid() != runtimeapi.NamespaceMode_TARGET {
		return "", nil
	}
	t, err := m.get(opts.GetTargetId())
	if err != nil {
		return "", fmt.Errorf("pid namespace target: %w", err)
	}
	// api.proto: the target must be a container of the same pod; any
	// other would let one pod join another's processes.
	if t.meta.PodID != podID {
		return "", fmt.Errorf("pid namespace target %s is not in pod %s: %w", t.meta.ID, podID, errdefs.ErrInvalidArgument)
	}
	st := t.snapshot()
	if st.State != StateRunning || !st.Init.Alive() {
		return "", fmt.Errorf("pid namespace target %s is not running: %w", t.meta.ID, errdefs.ErrFailedPrecondition)
	}
	return fmt.Sprintf("/proc/%d/ns/pid", st.Init.PID), nil
}

// validName accepts names that are safe in a path, in conmon's argv and
// in the reserved name (whose parts are joined by '_').
func validName(s string) error {
	if len(s) > 253 || strings.ContainsAny(s, "/\x00\n\r ") {
		return fmt.Errorf("container name %q is not valid: %w", s, errdefs.ErrInvalidArgument)
	}
	return nil
}

func cloneResources(r *runtimeapi.LinuxContainerResources) *runtimeapi.LinuxContainerResources {
	if r == nil {
		return nil
	}
	return proto.Clone(r).(*runtimeapi.LinuxContainerResources)
}
