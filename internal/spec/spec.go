// Package spec turns a CRI ContainerConfig, the image's config and the
// pod's sandbox into an OCI runtime spec (v1.2.1) for runc. It is pure
// apart from reading: the image's /etc/passwd and /etc/group (safely,
// inside the rootfs), seccomp profile files and the stat of mount and
// device sources. It writes nothing, so every rule is unit tested
// without root.
//
// The host is an input (Host): settings the node cannot honour are
// adapted (dropped or clamped) and reported in Result.Adapted, so a
// kubelet asking for hugepages or CAP_SYS_RESOURCE on a node without
// them gets a running container rather than a runc error.
package spec

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	ociv1 "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/idmap"
)

// Sandbox is what a container needs from its pod.
type Sandbox struct {
	ID       string
	Hostname string
	// NetNS, IPCNS, UTSNS and PIDNS are namespace paths to join; ""
	// means the host's (PIDNS: the pod shares no PID namespace).
	NetNS, IPCNS, UTSNS, PIDNS string
	CgroupParent               string
	// ShmPath is bind-mounted at /dev/shm; "" gives a private tmpfs.
	ShmPath        string
	ResolvConfPath string
	HostnamePath   string
	HostsPath      string
	// UserNS is the pod's pinned user namespace ("" for the host's) and
	// IDMappings its mapping; the container joins it.
	UserNS     string
	IDMappings *idmap.Mappings
}

// Options are the node-wide settings from berth's config.
type Options struct {
	// DefaultCaps is the capability set of an unprivileged container
	// before the request's add/drop.
	DefaultCaps []string
	// PidsLimit is the default pids limit; 0 or less for none.
	PidsLimit int64
	// CgroupManager is "cgroupfs" or "systemd".
	CgroupManager string
	// SeccompDefault is a profile (JSON) used for RuntimeDefault instead
	// of the built-in one; empty for the built-in.
	SeccompDefault []byte
	// AppArmorDefault is the profile used for RuntimeDefault when the
	// host has AppArmor; empty for none.
	AppArmorDefault string
}

// Input is everything Generate reads.
type Input struct {
	ID      string
	Config  *runtimeapi.ContainerConfig
	Image   ociv1.ImageConfig
	Sandbox Sandbox
	// RootFS is the mounted root filesystem; its /etc/passwd and
	// /etc/group resolve user names. "" skips that (numeric ids only).
	RootFS string
	// TargetPIDNS is the PID namespace path of the target container for
	// the TARGET pid mode.
	TargetPIDNS string
	// ImageVolumes are the host sources of the request's image mounts
	// (the mounted image, or its sub path), by container path.
	ImageVolumes map[string]string
	Host         *Host
	Options      Options
}

// Result is the spec and what was decided on the way.
type Result struct {
	Spec *specs.Spec
	User User
	// Volumes are image VOLUME dirs to create inside the rootfs.
	Volumes []string
	// Adapted says, in words, what was changed to fit the host.
	Adapted []string
}

// Validate checks the parts of a request that need neither the image nor
// the rootfs, so that a bad request is refused before anything is made.
func Validate(cfg *runtimeapi.ContainerConfig) error {
	if cfg == nil {
		return invalid("container config is required")
	}
	if err := ValidateEnv(cfg.GetEnvs()); err != nil {
		return err
	}
	if cfg.GetWorkingDir() != "" {
		if _, err := WorkingDir(cfg.GetWorkingDir(), ""); err != nil {
			return err
		}
	}
	if err := ValidateMounts(cfg.GetMounts()); err != nil {
		return err
	}
	sc := cfg.GetLinux().GetSecurityContext()
	if u := sc.GetRunAsUser(); u != nil {
		if _, err := checkID(u.GetValue()); err != nil {
			return fmt.Errorf("run_as_user: %w", err)
		}
	}
	if g := sc.GetRunAsGroup(); g != nil {
		if sc.GetRunAsUser() == nil && sc.GetRunAsUsername() == "" {
			return invalid("run_as_group is set without run_as_user or run_as_username")
		}
		if _, err := checkID(g.GetValue()); err != nil {
			return fmt.Errorf("run_as_group: %w", err)
		}
	}
	for _, a := range append(slices.Clip(cfg.GetCommand()), cfg.GetArgs()...) {
		if strings.ContainsRune(a, 0) {
			return invalid("argument contains a NUL byte")
		}
		if len(a) >= maxArgLen {
			return invalid("an argument is %d bytes long: the kernel runs no command with an argument of %d bytes or more", len(a), maxArgLen)
		}
	}
	for _, d := range cfg.GetDevices() {
		if _, err := cleanContainerPath("device path", d.GetContainerPath()); err != nil {
			return err
		}
	}
	return nil
}

// Generate builds the OCI spec.
func Generate(in *Input) (*Result, error) {
	cfg := in.Config
	if err := Validate(cfg); err != nil {
		return nil, err
	}
	h := in.Host
	if h == nil {
		h = &Host{}
	}
	res := &Result{}
	sc := cfg.GetLinux().GetSecurityContext()
	privileged := sc.GetPrivileged()

	args, err := command(cfg, in.Image.Entrypoint, in.Image.Cmd)
	if err != nil {
		return nil, err
	}
	user, err := resolveUser(in.RootFS, in.Image.User, sc)
	if err != nil {
		return nil, err
	}
	res.User = *user
	env, err := environment(in.Image.Env, cfg.GetEnvs(), in.Sandbox.Hostname, user.Home)
	if err != nil {
		return nil, err
	}
	cwd, err := WorkingDir(cfg.GetWorkingDir(), in.Image.WorkingDir)
	if err != nil {
		return nil, err
	}
	caps, err := capabilities(in.Options.DefaultCaps, sc, h, &res.Adapted)
	if err != nil {
		return nil, err
	}
	oomAdj, err := oomScoreAdj(cfg.GetLinux().GetResources().GetOomScoreAdj(), h, &res.Adapted)
	if err != nil {
		return nil, err
	}
	s := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: in.RootFS, Readonly: sc.GetReadonlyRootfs()},
		Process: &specs.Process{
			Terminal: cfg.GetTty(),
			User: specs.User{
				UID: user.UID, GID: user.GID,
				AdditionalGids: user.Groups(),
			},
			Args: args,
			Env:  env,
			Cwd:  cwd,
			Capabilities: &specs.LinuxCapabilities{
				Bounding:    caps.bounding,
				Effective:   slices.Clone(caps.bounding),
				Permitted:   slices.Clone(caps.bounding),
				Inheritable: caps.ambient,
				Ambient:     caps.ambient,
			},
			NoNewPrivileges: sc.GetNoNewPrivs(),
			OOMScoreAdj:     &oomAdj,
		},
		Annotations: maps.Clone(cfg.GetAnnotations()),
		Linux:       &specs.Linux{},
	}
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations["io.kubernetes.cri.sandbox-id"] = in.Sandbox.ID
	s.Annotations["io.kubernetes.cri.container-name"] = cfg.GetMetadata().GetName()

	ns, err := namespaces(sc, &in.Sandbox, in.TargetPIDNS, h)
	if err != nil {
		return nil, err
	}
	s.Linux.Namespaces = ns
	if err := mountMappings(cfg.GetMounts(), &in.Sandbox); err != nil {
		return nil, err
	}
	if in.Sandbox.UserNS != "" {
		// runc 1.1 wants the mappings of a user namespace it joins.
		s.Linux.UIDMappings = idmap.OCI(in.Sandbox.IDMappings.UIDs)
		s.Linux.GIDMappings = idmap.OCI(in.Sandbox.IDMappings.GIDs)
	}

	// Mounts: runtime defaults, the pod's shared files, then the request.
	um, rootProp, err := userMounts(cfg.GetMounts(), in.ImageVolumes)
	if err != nil {
		return nil, err
	}
	defaults := append(baseMounts(privileged), podMounts(&in.Sandbox, sc.GetReadonlyRootfs())...)
	s.Mounts = mergeMounts(defaults, um)
	s.Linux.RootfsPropagation = rootProp
	if res.Volumes, err = ImageVolumes(in.Image.Volumes, cfg.GetMounts()); err != nil {
		return nil, err
	}

	devs, rules, err := devices(cfg.GetDevices(), privileged, h)
	if err != nil {
		return nil, err
	}
	s.Linux.Devices = devs
	resources, err := Resources(cfg.GetLinux().GetResources(), in.Options.PidsLimit, h, &res.Adapted)
	if err != nil {
		return nil, err
	}
	resources.Devices = rules
	s.Linux.Resources = resources
	s.Linux.CgroupsPath = CgroupsPath(in.Options.CgroupManager, in.Sandbox.CgroupParent, in.ID)

	if !privileged {
		s.Linux.MaskedPaths = cleanList(sc.GetMaskedPaths())
		s.Linux.ReadonlyPaths = cleanList(sc.GetReadonlyPaths())
	}
	if s.Linux.Seccomp, err = seccompProfile(sc, s, in.Options.SeccompDefault); err != nil {
		return nil, err
	}
	if s.Process.ApparmorProfile, err = apparmorProfile(sc, h, in.Options.AppArmorDefault, &res.Adapted); err != nil {
		return nil, err
	}
	res.Spec = s
	return res, nil
}

// cleanList copies a path list, keeping nil for "none sent" (the kubelet
// sends empty lists for an unmasked /proc).
func cleanList(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	return append([]string(nil), in...)
}
