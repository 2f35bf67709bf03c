package config

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
)

// reloadable lists the keys a SIGHUP applies to a running daemon. The
// registries.conf and policy.json files are re-read on every SIGHUP even
// when their paths stay the same.
var reloadable = []string{
	"berth.runtime.log_level",
	"berth.runtime.default_runtime",
	"berth.image.pause_image",
	"berth.image.pinned_images",
	"berth.image.signature_policy",
	"berth.image.registries_conf",
	"berth.image.registries_conf_dir",
	"berth.image.insecure_registries",
	"berth.image.global_auth_file",
	"berth.image.pull_progress_timeout",
	"berth.image.short_name_mode",
}

// Change is one key whose value differs between two snapshots.
type Change struct {
	Key      string
	Old, New string
}

// Merge returns the snapshot to run with after a reload: old, with the
// reloadable keys taken from next. It also returns what it applied and
// the changed keys that need a restart to take effect.
func Merge(old, next *Config) (merged *Config, applied, ignored []Change) {
	merged = new(Config)
	*merged = *old
	merged.Berth.Runtime.Runtimes = old.Berth.Runtime.Runtimes
	oldKeys, newKeys := flatten(old), flatten(next)
	keys := make([]string, 0, len(newKeys))
	for k := range newKeys {
		keys = append(keys, k)
	}
	for k := range oldKeys {
		if _, ok := newKeys[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		o, n := oldKeys[k], newKeys[k]
		if o == n {
			continue
		}
		ch := Change{Key: k, Old: o, New: n}
		if slices.Contains(reloadable, k) {
			applied = append(applied, ch)
		} else {
			ignored = append(ignored, ch)
		}
	}
	i, n := &merged.Berth.Image, &next.Berth.Image
	i.PauseImage, i.PinnedImages = n.PauseImage, n.PinnedImages
	i.SignaturePolicy, i.RegistriesConf, i.RegistriesConfDir = n.SignaturePolicy, n.RegistriesConf, n.RegistriesConfDir
	i.InsecureRegistries, i.GlobalAuthFile = n.InsecureRegistries, n.GlobalAuthFile
	i.PullProgressTimeout, i.ShortNameMode = n.PullProgressTimeout, n.ShortNameMode
	merged.Berth.Runtime.LogLevel = next.Berth.Runtime.LogLevel
	// A new default handler only makes sense if it exists in the handlers
	// the daemon keeps; the handler table itself is not reloadable.
	if _, ok := merged.Berth.Runtime.Runtimes[next.Berth.Runtime.DefaultRuntime]; ok {
		merged.Berth.Runtime.DefaultRuntime = next.Berth.Runtime.DefaultRuntime
	}
	return merged, applied, ignored
}

// flatten maps every leaf key of c to its printed value.
func flatten(c *Config) map[string]string {
	out := map[string]string{}
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		switch {
		case v.Kind() == reflect.Struct && v.Type() != reflect.TypeOf(Duration{}):
			for i := range v.NumField() {
				walk(prefix+"."+v.Type().Field(i).Tag.Get("toml"), v.Field(i))
			}
		case v.Kind() == reflect.Map:
			for _, k := range v.MapKeys() {
				walk(prefix+"."+k.String(), v.MapIndex(k))
			}
		case v.Kind() == reflect.Slice:
			parts := make([]string, v.Len())
			for i := range parts {
				parts[i] = fmt.Sprint(v.Index(i).Interface())
			}
			out[prefix] = "[" + strings.Join(parts, ", ") + "]"
		default:
			out[prefix] = fmt.Sprint(v.Interface())
		}
	}
	walk("berth", reflect.ValueOf(c.Berth))
	return out
}
