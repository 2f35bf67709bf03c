// Package config owns berth's configuration: the schema, its defaults,
// loading a TOML file plus drop-ins, validation, and printing it back.
//
// A Config is an immutable snapshot. The daemon publishes the current one
// through an atomic pointer; SIGHUP builds a new snapshot and Merge applies
// only the fields tagged `reload:"true"`.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"
)

// Default paths. Every one of them can be changed in the config file.
const (
	DefaultConfigFile = "/etc/berth/berth.toml"
	DefaultSocket     = "/run/berth/berth.sock"
)

// Config is the whole configuration, grouped like crio.conf.
type Config struct {
	Berth Berth `toml:"berth"`
}

// Berth holds the top-level [berth] table: where state and storage live.
type Berth struct {
	// Root is the containers/storage root (images and writable layers).
	Root string `toml:"root" comment:"containers/storage root: image layers and container writable layers."`
	// RunRoot is the containers/storage run root (mounts, locks).
	RunRoot string `toml:"runroot" comment:"containers/storage run root: mount points and locks."`
	// StorageDriver is the graph driver; empty picks overlay, then vfs.
	StorageDriver string `toml:"storage_driver" comment:"Storage driver: overlay or vfs. Empty: overlay when the kernel supports it, else vfs."`
	// StorageOptions are passed to the driver, as in storage.conf.
	StorageOptions []string `toml:"storage_option" comment:"Options for the storage driver, e.g. \"overlay.mountopt=nodev\"."`
	// StorageConf is a containers storage.conf whose values are used as a base.
	StorageConf string `toml:"storage_conf" comment:"containers storage.conf read as the base for the four keys above (empty: none)."`
	// StateDir holds berth's own pod and container records.
	StateDir string `toml:"state_dir" comment:"berth's own records of pods and containers (survive restarts)."`
	// RunDir holds volatile runtime files: exits, pinned namespaces, attach sockets.
	RunDir string `toml:"run_dir" comment:"Volatile runtime files: exit files, pinned namespaces, attach sockets."`
	// LogDir is where conmon's own logs of containers go when the CRI gives no path.
	LogDir string `toml:"log_dir" comment:"Default directory for container logs when the CRI request names none."`

	API     API     `toml:"api"`
	Runtime Runtime `toml:"runtime"`
	Image   Image   `toml:"image"`
	Network Network `toml:"network"`
	Metrics Metrics `toml:"metrics"`
	Tracing Tracing `toml:"tracing"`
	Stats   Stats   `toml:"stats" comment:"The stats collector behind the CRI stats RPCs."`
	NRI     NRI     `toml:"nri" comment:"NRI plugins (Node Resource Interface), as in CRI-O."`
}

// API is the [berth.api] table: the CRI socket and the streaming server.
type API struct {
	Listen          string `toml:"listen" comment:"Path of the CRI gRPC unix socket."`
	StreamAddress   string `toml:"stream_address" comment:"Address the streaming server (exec, attach, port-forward) binds to."`
	StreamPort      string `toml:"stream_port" comment:"Port of the streaming server; \"0\" picks a free one."`
	GRPCMaxSendSize int    `toml:"grpc_max_send_msg_size" comment:"Largest gRPC message berth sends, in bytes."`
	GRPCMaxRecvSize int    `toml:"grpc_max_recv_msg_size" comment:"Largest gRPC message berth accepts, in bytes."`
	// MaxMetadataSize bounds the labels and annotations of one pod or
	// container: they are kept in memory and in every List reply.
	MaxMetadataSize int `toml:"max_metadata_size" comment:"Largest size in bytes of the labels and annotations of one pod or container together (the Kubernetes API's 256 KiB); -1: no limit."`

	// StreamEnableTLS serves the streaming server over TLS with the files below.
	StreamEnableTLS bool   `toml:"stream_enable_tls" comment:"Serve exec, attach and port-forward over TLS (stream_tls_cert and stream_tls_key must be set)."`
	StreamTLSCert   string `toml:"stream_tls_cert" comment:"PEM certificate of the streaming server; its content is re-read on every SIGHUP (the path needs a restart)."`
	StreamTLSKey    string `toml:"stream_tls_key" comment:"PEM private key of the streaming server; its content is re-read on every SIGHUP (the path needs a restart)."`
	StreamTLSCA     string `toml:"stream_tls_ca" comment:"PEM CA bundle; when set, streaming clients must present a certificate it signed. Its content is re-read on every SIGHUP (the path needs a restart)."`
	// StreamIdleTimeout closes a streaming connection that carried no data for this long.
	StreamIdleTimeout Duration `toml:"stream_idle_timeout" comment:"A streaming connection with no traffic for this long is closed."`
}

// Runtime is the [berth.runtime] table: how containers are run.
type Runtime struct {
	LogLevel       string             `toml:"log_level" reload:"true" comment:"Log level: debug, info, warn or error."`
	DefaultRuntime string             `toml:"default_runtime" reload:"true" comment:"Runtime handler used when the pod names none; must be one of the handlers berthd started with."`
	Runtimes       map[string]Handler `toml:"runtimes" comment:"Runtime handlers by name."`
	Conmon         string             `toml:"conmon" comment:"Path of the conmon binary."`
	ConmonCgroup   string             `toml:"conmon_cgroup" comment:"Cgroup for conmon processes: \"pod\" puts each in its pod's cgroup."`
	CgroupManager  string             `toml:"cgroup_manager" comment:"Cgroup manager: cgroupfs or systemd."`
	DefaultCaps    []string           `toml:"default_capabilities" comment:"Capabilities every container gets unless the CRI request says otherwise."`
	DefaultSysctls []string           `toml:"default_sysctls" comment:"Sysctls set in every pod, as \"key=value\"."`
	PidsLimit      int64              `toml:"pids_limit" comment:"Default pids limit of a container; 0 or -1 for none."`
	LogSizeMax     int64              `toml:"log_size_max" comment:"Largest size of a container log file in bytes before conmon truncates it; -1 for no limit."`
	ShmSize        string             `toml:"shm_size" comment:"Size of each pod's /dev/shm tmpfs, e.g. \"64m\"."`
	SeccompProfile string             `toml:"seccomp_profile" comment:"Path of a seccomp profile JSON used for RuntimeDefault; empty: the built-in default profile."`
	// AppArmorProfile is loaded by berth (its built-in profile) when the
	// host has AppArmor and no profile of that name is loaded yet.
	AppArmorProfile string `toml:"apparmor_profile" comment:"AppArmor profile of RuntimeDefault (and unset) containers on hosts with AppArmor; berth loads its built-in profile under this name if none is loaded."`
	// StopTimeout bounds, as CRI-O's ctr_stop_timeout does, how long a stop
	// waits for a killed container to be gone before it reports an error
	// (a process stuck in the kernel, a frozen cgroup). It does not lengthen
	// the grace period the CRI request asks for.
	StopTimeout int64 `toml:"ctr_stop_timeout" reload:"true" comment:"Seconds a stop waits for a container to be gone after SIGKILL before it fails (the kubelet then retries)."`
	// The node's extensions of container specs (internal/ociext): CDI
	// devices, OCI hooks and default mounts, under CRI-O's key names.
	CDISpecDirs       []string `toml:"cdi_spec_dirs" comment:"Directories of CDI specs, in increasing priority; watched, so a new spec needs no restart."`
	HooksDirs         []string `toml:"hooks_dir" comment:"Directories of OCI hook configs (containers hooks.d JSON), a file in a later one replacing one of the same name; created if missing and watched."`
	DefaultMountsFile string   `toml:"default_mounts_file" reload:"true" comment:"File of \"/host/path:/container/path\" lines bind-mounted read-only into every container; a missing file means none."`
}

// Handler describes one OCI runtime handler ([berth.runtime.runtimes.NAME]).
type Handler struct {
	RuntimePath string `toml:"runtime_path" comment:"Path of the OCI runtime binary."`
	RuntimeRoot string `toml:"runtime_root" comment:"State root passed to the runtime as --root."`
	RuntimeType string `toml:"runtime_type" comment:"Runtime type; only \"oci\" is supported."`
	// AllowedAnnotations are the io.berth.* annotations containers of this
	// handler may use to change berth's behaviour, as in crio.conf.
	AllowedAnnotations []string `toml:"allowed_annotations" comment:"Behaviour annotations (io.berth.*) that pods of this handler may set."`
}

// Image is the [berth.image] table: pulling and keeping images.
type Image struct {
	GlobalAuthFile      string   `toml:"global_auth_file" reload:"true" comment:"Auth file (containers-auth.json format) used when a pull carries no credentials."`
	PauseImage          string   `toml:"pause_image" reload:"true" comment:"Never removed by RemoveImage and reported as pinned, as in CRI-O (berth runs pods without a pause image and never pulls it)."`
	PinnedImages        []string `toml:"pinned_images" reload:"true" comment:"Images never removed by RemoveImage and reported as pinned; exact names or globs ending in '*'."`
	SignaturePolicy     string   `toml:"signature_policy" reload:"true" comment:"Signature policy file (policy.json); its content is re-read on every SIGHUP."`
	RegistriesConf      string   `toml:"registries_conf" reload:"true" comment:"registries.conf used for name resolution, mirrors and blocking; its content is re-read on every SIGHUP."`
	RegistriesConfDir   string   `toml:"registries_conf_dir" reload:"true" comment:"Drop-in directory of registries.conf; re-read on every SIGHUP."`
	InsecureRegistries  []string `toml:"insecure_registries" reload:"true" comment:"Registries reached without TLS verification (in addition to registries.conf)."`
	CertsDir            string   `toml:"certs_dir" comment:"Directory of per-registry TLS files, as /etc/containers/certs.d: <host:port>/ca.crt, client.cert, client.key."`
	PullProgressTimeout Duration `toml:"pull_progress_timeout" reload:"true" comment:"A pull that makes no progress for this long is aborted; 0 disables."`
	ShortNameMode       string   `toml:"short_name_mode" reload:"true" comment:"Short name resolution: enforcing (ambiguity is an error) or disabled."`
}

// Network is the [berth.network] table: CNI.
type Network struct {
	DefaultNetwork string   `toml:"cni_default_network" comment:"CNI network used for pods; empty: the first config in network_dir."`
	NetworkDir     string   `toml:"network_dir" comment:"Directory of CNI network configs."`
	PluginDirs     []string `toml:"plugin_dirs" comment:"Directories searched for CNI plugin binaries."`
	// Timeout bounds one CNI ADD or DEL of a whole plugin chain; a
	// plugin still running then is killed.
	Timeout Duration `toml:"cni_timeout" comment:"How long one CNI ADD or DEL of the whole plugin chain may take before its plugin is killed and the pod fails."`
}

// Metrics is the [berth.metrics] table: the Prometheus endpoint.
type Metrics struct {
	Enable bool   `toml:"enable_metrics" comment:"Serve Prometheus metrics."`
	Host   string `toml:"metrics_host" comment:"Address the metrics endpoint binds to."`
	Port   int    `toml:"metrics_port" comment:"Port of the metrics endpoint."`
	// Socket, when set, serves the metrics on this unix socket instead of
	// metrics_host:metrics_port.
	Socket string `toml:"metrics_socket" comment:"Unix socket serving the metrics instead of metrics_host:metrics_port (empty: TCP)."`
}

// Stats is the [berth.stats] table: the container and pod stats collector.
type Stats struct {
	// CollectionPeriod is how often the collector samples every container
	// and pod; 0 samples only when the CRI asks.
	CollectionPeriod Duration `toml:"stats_collection_period" comment:"How often container and pod stats are sampled in the background; 0 samples on demand, when the CRI asks."`
}

// Duration is a time.Duration written as a Go duration string in TOML.
type Duration struct{ time.Duration }

// UnmarshalText parses "30s", "1m" and friends.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText prints the duration the way UnmarshalText reads it.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Default returns the built-in configuration.
func Default() *Config {
	c := &Config{Berth: Berth{
		Root:           "/var/lib/containers/storage",
		StorageOptions: []string{},
		RunRoot:        "/run/containers/storage",
		StateDir:       "/var/lib/berth",
		RunDir:         "/run/berth",
		LogDir:         "/var/log/berth",
		API: API{
			Listen:          DefaultSocket,
			StreamAddress:   "127.0.0.1",
			StreamPort:      "0",
			GRPCMaxSendSize: 80 * 1024 * 1024,
			GRPCMaxRecvSize: 80 * 1024 * 1024,
			MaxMetadataSize: 256 << 10,

			StreamIdleTimeout: Duration{4 * time.Hour},
		},
		Runtime: Runtime{
			LogLevel:       "info",
			DefaultRuntime: "runc",
			Runtimes: map[string]Handler{
				"runc": {RuntimePath: "/usr/sbin/runc", RuntimeRoot: "/run/runc", RuntimeType: "oci"},
			},
			Conmon:        "/usr/bin/conmon",
			ConmonCgroup:  "pod",
			CgroupManager: "cgroupfs",
			DefaultCaps: []string{
				"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "SETGID", "SETUID",
				"SETPCAP", "NET_BIND_SERVICE", "KILL",
			},
			DefaultSysctls:  []string{},
			PidsLimit:       0,
			LogSizeMax:      -1,
			ShmSize:         "64m",
			AppArmorProfile: "berth-default",
			StopTimeout:     30,

			CDISpecDirs:       []string{"/etc/cdi", "/var/run/cdi"},
			HooksDirs:         []string{"/usr/share/containers/oci/hooks.d", "/etc/containers/oci/hooks.d"},
			DefaultMountsFile: "/etc/containers/mounts.conf",
		},
		Image: Image{
			PauseImage:          "registry.k8s.io/pause:3.10",
			PinnedImages:        []string{},
			InsecureRegistries:  []string{},
			SignaturePolicy:     "/etc/containers/policy.json",
			RegistriesConf:      "/etc/containers/registries.conf",
			RegistriesConfDir:   "/etc/containers/registries.conf.d",
			CertsDir:            "/etc/containers/certs.d",
			PullProgressTimeout: Duration{time.Minute},
			ShortNameMode:       "enforcing",
		},
		Network: Network{
			NetworkDir: "/etc/cni/net.d",
			PluginDirs: []string{"/usr/lib/cni", "/opt/cni/bin"},
			Timeout:    Duration{2 * time.Minute},
		},
		Metrics: Metrics{Host: "127.0.0.1", Port: 9090},
		Tracing: defaultTracing(),
		Stats:   Stats{CollectionPeriod: Duration{10 * time.Second}},
		NRI:     defaultNRI(),
	}}
	normalize(reflect.ValueOf(c).Elem())
	return c
}

// Validate checks every value. The error joins one *FieldError per bad
// key (see FieldErrors), in schema order, so that all of them are
// reported at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) { errs = append(errs, fieldErr(key, format, args...)) }
	b := &c.Berth
	for _, p := range []struct{ key, path string }{
		{"berth.root", b.Root}, {"berth.runroot", b.RunRoot}, {"berth.state_dir", b.StateDir},
		{"berth.run_dir", b.RunDir}, {"berth.log_dir", b.LogDir}, {"berth.api.listen", b.API.Listen},
		{"berth.runtime.conmon", b.Runtime.Conmon}, {"berth.network.network_dir", b.Network.NetworkDir},
	} {
		if !filepath.IsAbs(p.path) {
			bad(p.key, "%q is not an absolute path", p.path)
		}
	}
	switch b.StorageDriver {
	case "", "overlay", "vfs":
	default:
		bad("berth.storage_driver", "%q is not supported (overlay or vfs)", b.StorageDriver)
	}
	if _, err := ParseLogLevel(b.Runtime.LogLevel); err != nil {
		bad("berth.runtime.log_level", "%w", err)
	}
	switch b.Runtime.CgroupManager {
	case "cgroupfs", "systemd":
	default:
		bad("berth.runtime.cgroup_manager", "%q is not cgroupfs or systemd", b.Runtime.CgroupManager)
	}
	if len(b.Runtime.Runtimes) == 0 {
		bad("berth.runtime.runtimes", "at least one runtime handler is needed")
	}
	for _, name := range slices.Sorted(maps.Keys(b.Runtime.Runtimes)) {
		h := b.Runtime.Runtimes[name]
		if h.RuntimePath == "" {
			bad("berth.runtime.runtimes."+name+".runtime_path", "must be set")
		}
		if h.RuntimeType != "" && h.RuntimeType != "oci" {
			bad("berth.runtime.runtimes."+name+".runtime_type", "%q is not supported (oci)", h.RuntimeType)
		}
	}
	if _, ok := b.Runtime.Runtimes[b.Runtime.DefaultRuntime]; !ok {
		bad("berth.runtime.default_runtime", "%q is not a configured runtime handler", b.Runtime.DefaultRuntime)
	}
	if p := b.Runtime.AppArmorProfile; p == "" || p == "unconfined" || strings.ContainsAny(p, " \t\n\x00/") {
		bad("berth.runtime.apparmor_profile", "%q is not a profile name", p)
	}
	if _, err := ParseSize(b.Runtime.ShmSize); err != nil {
		bad("berth.runtime.shm_size", "%w", err)
	}
	for _, s := range b.Runtime.DefaultSysctls {
		if k, _, ok := strings.Cut(s, "="); !ok || k == "" {
			bad("berth.runtime.default_sysctls", "%q is not key=value", s)
		}
	}
	if b.API.MaxMetadataSize == 0 || b.API.MaxMetadataSize < -1 {
		bad("berth.api.max_metadata_size", "%d is not a size in bytes (or -1 for no limit)", b.API.MaxMetadataSize)
	}
	if b.Runtime.StopTimeout < 1 {
		bad("berth.runtime.ctr_stop_timeout", "%d is not a number of seconds of at least 1", b.Runtime.StopTimeout)
	}
	errs = append(errs, b.Runtime.validateExtensions()...)
	if b.Network.Timeout.Duration <= 0 {
		bad("berth.network.cni_timeout", "must be positive")
	}
	if b.Image.PullProgressTimeout.Duration < 0 {
		bad("berth.image.pull_progress_timeout", "must not be negative")
	}
	switch b.Image.ShortNameMode {
	case "enforcing", "disabled":
	default:
		bad("berth.image.short_name_mode", "%q is not enforcing or disabled", b.Image.ShortNameMode)
	}
	if b.Metrics.Port < 0 || b.Metrics.Port > 65535 {
		bad("berth.metrics.metrics_port", "%d is not a port", b.Metrics.Port)
	}
	if b.Metrics.Socket != "" && !filepath.IsAbs(b.Metrics.Socket) {
		bad("berth.metrics.metrics_socket", "%q is not an absolute path", b.Metrics.Socket)
	}
	validateTracing(b.Tracing, bad)
	if b.Stats.CollectionPeriod.Duration < 0 {
		bad("berth.stats.stats_collection_period", "must not be negative")
	}
	errs = append(errs, b.NRI.validate()...)
	return errors.Join(errs...)
}

// FieldError says which key holds a bad value and why.
type FieldError struct {
	Key    string
	Reason error
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Reason.Error() }
func (e *FieldError) Unwrap() error { return e.Reason }

func fieldErr(key, format string, args ...any) error {
	return &FieldError{Key: key, Reason: fmt.Errorf(format, args...)}
}

// ParseLogLevel maps a config log level to slog's.
func ParseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
	}
	return l, nil
}

// ParseSize reads sizes like "64m", "1g" or "65536" into bytes.
func ParseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "b")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k':
			mult, t = 1<<10, t[:n-1]
		case 'm':
			mult, t = 1<<20, t[:n-1]
		case 'g':
			mult, t = 1<<30, t[:n-1]
		}
	}
	var v int64
	if _, err := fmt.Sscanf(t, "%d", &v); err != nil || v <= 0 || fmt.Sprint(v) != t {
		return 0, fmt.Errorf("%q is not a size like 64m", s)
	}
	return v * mult, nil
}

// Pins are the image name patterns that RemoveImage refuses and image
// status reports as pinned: pinned_images, and the pause image as CRI-O
// pins it, so the kubelet's image GC keeps a pre-pulled one.
func (i Image) Pins() []string {
	if i.PauseImage == "" {
		return i.PinnedImages
	}
	return append(slices.Clip(i.PinnedImages), i.PauseImage)
}

// Handler returns the runtime handler named name; "" means the default one.
func (c *Config) Handler(name string) (string, Handler, error) {
	if name == "" {
		name = c.Berth.Runtime.DefaultRuntime
	}
	h, ok := c.Berth.Runtime.Runtimes[name]
	if !ok {
		return "", Handler{}, fmt.Errorf("runtime handler %q is not configured", name)
	}
	return name, h, nil
}

// dirExists reports whether p is a directory; used for drop-in lookups.
func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
