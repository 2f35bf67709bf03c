package config

import (
	"fmt"
	"reflect"
	"time"

	"github.com/spf13/pflag"
)

// flagKeys are berthd's command-line flags and the config key each one
// overrides. The flag's type, default and help come from the key.
var flagKeys = []struct{ name, key string }{
	{"listen", "berth.api.listen"},
	{"stream-address", "berth.api.stream_address"},
	{"stream-port", "berth.api.stream_port"},
	{"root", "berth.root"},
	{"runroot", "berth.runroot"},
	{"storage-driver", "berth.storage_driver"},
	{"storage-opt", "berth.storage_option"},
	{"state-dir", "berth.state_dir"},
	{"run-dir", "berth.run_dir"},
	{"log-dir", "berth.log_dir"},
	{"log-level", "berth.runtime.log_level"},
	{"default-runtime", "berth.runtime.default_runtime"},
	{"conmon", "berth.runtime.conmon"},
	{"cgroup-manager", "berth.runtime.cgroup_manager"},
	{"default-capability", "berth.runtime.default_capabilities"},
	{"default-sysctls", "berth.runtime.default_sysctls"},
	{"registries-conf", "berth.image.registries_conf"},
	{"signature-policy", "berth.image.signature_policy"},
	{"global-auth-file", "berth.image.global_auth_file"},
	{"insecure-registry", "berth.image.insecure_registries"},
	{"pinned-images", "berth.image.pinned_images"},
	{"pull-progress-timeout", "berth.image.pull_progress_timeout"},
	{"network-dir", "berth.network.network_dir"},
	{"plugin-dirs", "berth.network.plugin_dirs"},
	{"enable-metrics", "berth.metrics.enable_metrics"},
	{"metrics-port", "berth.metrics.metrics_port"},
	{"enable-tracing", "berth.tracing.enable_tracing"},
	{"tracing-endpoint", "berth.tracing.tracing_endpoint"},
	{"tracing-sampling-rate-per-million", "berth.tracing.tracing_sampling_rate_per_million"},
}

// Flags are the command-line overrides of berthd. Only flags given on the
// command line override the files; the rest keep the files' values.
type Flags struct {
	fs *pflag.FlagSet
	// values holds the pointer pflag fills for each flag, by flag name.
	values map[string]any

	ConfigFile string
	DropInDir  string
}

// BindFlags registers the config flags on fs. Each flag's help names the
// key it overrides and shows the built-in default of that key.
func BindFlags(fs *pflag.FlagSet) *Flags {
	f := &Flags{fs: fs, values: map[string]any{}}
	fs.StringVarP(&f.ConfigFile, "config", "c", DefaultConfigFile, "main config file")
	fs.StringVar(&f.DropInDir, "config-dir", DefaultConfigFile+".d", "drop-in directory merged over the main file in lexical order")
	def := Default()
	for _, fk := range flagKeys {
		v, sf, ok := fieldByKey(def, fk.key)
		if !ok {
			panic(fmt.Sprintf("flag --%s overrides unknown key %s", fk.name, fk.key))
		}
		usage := fmt.Sprintf("%s [%s]", describe(sf), fk.key)
		switch d := v.Interface().(type) {
		case string:
			f.values[fk.name] = fs.String(fk.name, d, usage)
		case []string:
			f.values[fk.name] = fs.StringSlice(fk.name, d, usage)
		case Duration:
			f.values[fk.name] = fs.Duration(fk.name, d.Duration, usage)
		case bool:
			f.values[fk.name] = fs.Bool(fk.name, d, usage)
		case int:
			f.values[fk.name] = fs.Int(fk.name, d, usage)
		default:
			panic(fmt.Sprintf("flag --%s: no flag type for %s (%T)", fk.name, fk.key, d))
		}
	}
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

// apply sets the keys of the flags given on the command line and returns
// them with their flags.
func (f *Flags) apply(c *Config) map[string]string {
	set := map[string]string{}
	for _, fk := range flagKeys {
		if !f.fs.Changed(fk.name) {
			continue
		}
		field, _, _ := fieldByKey(c, fk.key)
		val := reflect.ValueOf(f.values[fk.name]).Elem()
		if d, ok := val.Interface().(time.Duration); ok {
			val = reflect.ValueOf(Duration{d})
		}
		field.Set(val)
		set[fk.key] = "--" + fk.name
	}
	return set
}
