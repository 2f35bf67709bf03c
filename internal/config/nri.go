package config

import (
	"path/filepath"
	"time"
)

// NRI is the [berth.nri] table: Node Resource Interface plugins, with
// CRI-O's key names.
type NRI struct {
	Enable bool `toml:"enable_nri" comment:"Host NRI plugins: pre-installed ones from nri_plugin_dir, external ones connecting to nri_listen."`
	// Listen is the socket external plugins connect to; tests point it
	// into a temp dir so that daemons never share it.
	Listen    string `toml:"nri_listen" comment:"Unix socket external NRI plugins connect to."`
	PluginDir string `toml:"nri_plugin_dir" comment:"Directory of pre-installed NRI plugins (executables named IDX-NAME), started by berthd."`
	// PluginConfigDir holds IDX-NAME.conf or NAME.conf, handed to the
	// pre-installed plugin of that name when it starts.
	PluginConfigDir string `toml:"nri_plugin_config_dir" comment:"Directory of configuration files of pre-installed NRI plugins (IDX-NAME.conf or NAME.conf)."`
	// RegistrationTimeout and RequestTimeout bound a plugin's answers; a
	// plugin that misses one is disconnected.
	RegistrationTimeout Duration `toml:"nri_plugin_registration_timeout" comment:"How long a plugin may take to register; a slower one is disconnected."`
	RequestTimeout      Duration `toml:"nri_plugin_request_timeout" comment:"How long a plugin may take to answer one event; a slower one is disconnected and the request goes on without it."`
	// DisableConnections keeps only pre-installed plugins: nri_listen is
	// not opened.
	DisableConnections bool `toml:"nri_disable_connections" comment:"Refuse external plugins: only pre-installed ones from nri_plugin_dir run."`
}

func defaultNRI() NRI {
	return NRI{
		Enable:              true,
		Listen:              "/var/run/nri/nri.sock",
		PluginDir:           "/opt/nri/plugins",
		PluginConfigDir:     "/etc/nri/conf.d",
		RegistrationTimeout: Duration{5 * time.Second},
		RequestTimeout:      Duration{2 * time.Second},
	}
}

// validate reports the bad keys of the table.
func (n *NRI) validate() []error {
	var errs []error
	for _, p := range []struct{ key, path string }{
		{"berth.nri.nri_listen", n.Listen}, {"berth.nri.nri_plugin_dir", n.PluginDir},
		{"berth.nri.nri_plugin_config_dir", n.PluginConfigDir},
	} {
		if !filepath.IsAbs(p.path) {
			errs = append(errs, fieldErr(p.key, "%q is not an absolute path", p.path))
		}
	}
	for _, d := range []struct {
		key string
		d   Duration
	}{
		{"berth.nri.nri_plugin_registration_timeout", n.RegistrationTimeout},
		{"berth.nri.nri_plugin_request_timeout", n.RequestTimeout},
	} {
		if d.d.Duration <= 0 {
			errs = append(errs, fieldErr(d.key, "%s is not a positive duration", d.d.Duration))
		}
	}
	return errs
}
