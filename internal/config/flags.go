package config

import (
	"time"

	"github.com/spf13/pflag"
)

// Flags are the command-line overrides of berthd. Only flags given on the
// command line override the files; the rest keep the file's values.
type Flags struct {
	fs  *pflag.FlagSet
	str map[string]*string
	sl  map[string]*[]string

	ConfigFile string
	DropInDir  string
	progress   time.Duration
	metrics    bool
	port       int
}

// stringFlags maps a flag name to the field it overrides.
var stringFlags = map[string]func(*Config) *string{
	"listen":           func(c *Config) *string { return &c.Berth.API.Listen },
	"log-level":        func(c *Config) *string { return &c.Berth.Runtime.LogLevel },
	"root":             func(c *Config) *string { return &c.Berth.Root },
	"runroot":          func(c *Config) *string { return &c.Berth.RunRoot },
	"storage-driver":   func(c *Config) *string { return &c.Berth.StorageDriver },
	"state-dir":        func(c *Config) *string { return &c.Berth.StateDir },
	"run-dir":          func(c *Config) *string { return &c.Berth.RunDir },
	"log-dir":          func(c *Config) *string { return &c.Berth.LogDir },
	"cgroup-manager":   func(c *Config) *string { return &c.Berth.Runtime.CgroupManager },
	"default-runtime":  func(c *Config) *string { return &c.Berth.Runtime.DefaultRuntime },
	"conmon":           func(c *Config) *string { return &c.Berth.Runtime.Conmon },
	"registries-conf":  func(c *Config) *string { return &c.Berth.Image.RegistriesConf },
	"signature-policy": func(c *Config) *string { return &c.Berth.Image.SignaturePolicy },
	"global-auth-file": func(c *Config) *string { return &c.Berth.Image.GlobalAuthFile },
	"network-dir":      func(c *Config) *string { return &c.Berth.Network.NetworkDir },
	"stream-address":   func(c *Config) *string { return &c.Berth.API.StreamAddress },
	"stream-port":      func(c *Config) *string { return &c.Berth.API.StreamPort },
}

var sliceFlags = map[string]func(*Config) *[]string{
	"plugin-dirs":        func(c *Config) *[]string { return &c.Berth.Network.PluginDirs },
	"insecure-registry":  func(c *Config) *[]string { return &c.Berth.Image.InsecureRegistries },
	"storage-opt":        func(c *Config) *[]string { return &c.Berth.StorageOptions },
	"pinned-images":      func(c *Config) *[]string { return &c.Berth.Image.PinnedImages },
	"default-sysctls":    func(c *Config) *[]string { return &c.Berth.Runtime.DefaultSysctls },
	"default-capability": func(c *Config) *[]string { return &c.Berth.Runtime.DefaultCaps },
}

// BindFlags registers the config flags on fs.
func BindFlags(fs *pflag.FlagSet) *Flags {
	f := &Flags{fs: fs, str: map[string]*string{}, sl: map[string]*[]string{}}
	fs.StringVarP(&f.ConfigFile, "config", "c", DefaultConfigFile, "main config file")
	fs.StringVar(&f.DropInDir, "config-dir", DefaultConfigFile+".d", "drop-in directory merged over the main file in lexical order")
	for name := range stringFlags {
		f.str[name] = fs.String(name, "", "overrides the config key of the same meaning")
	}
	for name := range sliceFlags {
		f.sl[name] = fs.StringSlice(name, nil, "overrides the config key of the same meaning")
	}
	fs.DurationVar(&f.progress, "pull-progress-timeout", 0, "overrides berth.image.pull_progress_timeout")
	fs.BoolVar(&f.metrics, "enable-metrics", false, "overrides berth.metrics.enable_metrics")
	fs.IntVar(&f.port, "metrics-port", 0, "overrides berth.metrics.metrics_port")
	return f
}

// Loader returns the loader for the files and flags given.
func (f *Flags) Loader() Loader {
	return Loader{
		File:         f.ConfigFile,
		DropInDir:    f.DropInDir,
		FileRequired: f.fs.Changed("config"),
		Overrides:    f.apply,
	}
}

func (f *Flags) apply(c *Config) {
	for name, field := range stringFlags {
		if f.fs.Changed(name) {
			*field(c) = *f.str[name]
		}
	}
	for name, field := range sliceFlags {
		if f.fs.Changed(name) {
			*field(c) = *f.sl[name]
		}
	}
	if f.fs.Changed("pull-progress-timeout") {
		c.Berth.Image.PullProgressTimeout = Duration{f.progress}
	}
	if f.fs.Changed("enable-metrics") {
		c.Berth.Metrics.Enable = f.metrics
	}
	if f.fs.Changed("metrics-port") {
		c.Berth.Metrics.Port = f.port
	}
}
