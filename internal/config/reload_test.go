package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// leafKeys lists every key of the schema that is not a table, in order.
func leafKeys() []string {
	var out []string
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if key := prefix + "." + f.Tag.Get("toml"); isTable(f.Type) {
				walk(key, f.Type)
			} else {
				out = append(out, key)
			}
		}
	}
	walk("berth", reflect.TypeOf(Berth{}))
	return out
}

// changeKey returns a copy of Default with key set to another value of
// its type (not necessarily a valid one: Merge must cope).
func changeKey(t *testing.T, key string) *Config {
	t.Helper()
	c := Default()
	parts := strings.Split(key, ".")
	v := reflect.ValueOf(&c.Berth).Elem()
	for _, p := range parts[1:] {
		f, ok := fieldByTag(v.Type(), p)
		if !ok {
			t.Fatalf("no field for %s", key)
		}
		v = v.FieldByIndex(f.Index)
	}
	switch x := v.Addr().Interface().(type) {
	case *string:
		*x += "/changed"
	case *[]string:
		*x = append(slices.Clone(*x), "changed")
	case *int:
		*x++
	case *int64:
		*x++
	case *bool:
		*x = !*x
	case *Duration:
		x.Duration += time.Second
	case *map[string]Handler:
		m := map[string]Handler{"extra": {RuntimePath: "/bin/extra", AllowedAnnotations: []string{}}}
		for k, h := range *x {
			m[k] = h
		}
		*x = m
	default:
		t.Fatalf("%s: no way to change a %T", key, x)
	}
	return c
}

// TestMergeTakesExactlyTheTaggedFields changes each key of the schema on
// its own: a key tagged reload is applied (or refused when the result is
// invalid), every other key is reported as needing a restart and keeps
// its running value. Nothing is silently dropped or double-counted.
func TestMergeTakesExactlyTheTaggedFields(t *testing.T) {
	reloadable := ReloadableKeys()
	for _, key := range leafKeys() {
		old, next := Default(), changeKey(t, key)
		r := Merge(old, next)
		all := len(r.Applied) + len(r.Restart) + len(r.Refused)
		if all == 0 {
			t.Errorf("%s: change not reported", key)
			continue
		}
		for _, l := range [][]Change{r.Applied, r.Restart, r.Refused} {
			for _, c := range l {
				if c.Key != key && !strings.HasPrefix(c.Key, key+".") {
					t.Errorf("%s: reported unrelated key %s", key, c.Key)
				}
			}
		}
		got, _, _ := fieldByKey(r.Config, key)
		want, _, _ := fieldByKey(old, key)
		if key == "berth.runtime.runtimes" {
			got, want = reflect.ValueOf(r.Config.Berth.Runtime.Runtimes), reflect.ValueOf(old.Berth.Runtime.Runtimes)
		}
		switch {
		case !slices.Contains(reloadable, key):
			if len(r.Restart) != all {
				t.Errorf("%s is not reloadable: want only restart changes, got %+v", key, r)
			}
		case len(r.Applied) == all:
			want, _, _ = fieldByKey(next, key)
		case len(r.Refused) == all:
			if r.Refused[0].Reason == "" {
				t.Errorf("%s: refused without a reason", key)
			}
		default:
			t.Errorf("%s is reloadable: want it applied or refused, got %+v", key, r)
		}
		if !reflect.DeepEqual(got.Interface(), want.Interface()) {
			t.Errorf("%s: merged value %v, want %v", key, got, want)
		}
		if !reflect.DeepEqual(old, Default()) {
			t.Fatalf("%s: Merge modified the running snapshot", key)
		}
	}
}

func TestReloadableKeysAreTheTaggedOnes(t *testing.T) {
	want := []string{
		"berth.runtime.log_level", "berth.runtime.default_runtime", "berth.runtime.ctr_stop_timeout", "berth.runtime.default_mounts_file",
		"berth.image.global_auth_file", "berth.image.pause_image", "berth.image.pinned_images",
		"berth.image.signature_policy", "berth.image.registries_conf", "berth.image.registries_conf_dir",
		"berth.image.insecure_registries", "berth.image.pull_progress_timeout", "berth.image.short_name_mode",
	}
	if got := ReloadableKeys(); !reflect.DeepEqual(got, want) {
		t.Errorf("reloadable keys:\n got %v\nwant %v", got, want)
	}
}

// TestMergeRefusesADefaultRuntimeTheDaemonLacks: a new handler needs a
// restart, so a default_runtime naming it cannot apply; it is refused,
// not reported as applied, and the other changes still apply.
func TestMergeRefusesADefaultRuntimeTheDaemonLacks(t *testing.T) {
	old, next := Default(), Default()
	next.Berth.Runtime.LogLevel = "debug"
	next.Berth.Image.PinnedImages = []string{"x"}
	next.Berth.Root = "/elsewhere"
	next.Berth.Runtime.Runtimes = map[string]Handler{"runc": old.Berth.Runtime.Runtimes["runc"], "new": {RuntimePath: "/bin/new", AllowedAnnotations: []string{}}}
	next.Berth.Runtime.DefaultRuntime = "new"

	r := Merge(old, next)
	keys := func(cs []Change) (out []string) {
		for _, c := range cs {
			out = append(out, c.Key)
		}
		return out
	}
	if got := keys(r.Applied); !reflect.DeepEqual(got, []string{"berth.image.pinned_images", "berth.runtime.log_level"}) {
		t.Errorf("applied = %v", got)
	}
	if got := keys(r.Refused); !reflect.DeepEqual(got, []string{"berth.runtime.default_runtime"}) {
		t.Errorf("refused = %v", got)
	} else if !strings.Contains(r.Refused[0].Reason, `"new" is not a configured runtime handler`) || r.Refused[0].New != "new" {
		t.Errorf("refused change %+v", r.Refused[0])
	}
	if got := keys(r.Restart); !reflect.DeepEqual(got, []string{"berth.root", "berth.runtime.runtimes.new.allowed_annotations", "berth.runtime.runtimes.new.runtime_path", "berth.runtime.runtimes.new.runtime_root", "berth.runtime.runtimes.new.runtime_type"}) {
		t.Errorf("restart = %v", got)
	}
	b := r.Config.Berth
	if b.Runtime.DefaultRuntime != "runc" || b.Runtime.LogLevel != "debug" || b.Root != old.Berth.Root || len(b.Runtime.Runtimes) != 1 {
		t.Errorf("merged snapshot: %+v", b)
	}
	if err := r.Config.Validate(); err != nil {
		t.Errorf("merged snapshot is invalid: %v", err)
	}

	// The same default_runtime once the daemon has the handler applies.
	r = Merge(next, next)
	if len(r.Applied)+len(r.Restart)+len(r.Refused) != 0 {
		t.Errorf("no change, yet %+v", r)
	}
}

func TestHiddenByFlags(t *testing.T) {
	old := map[string]Origin{"berth.root": {Flag: "--root", Shadowed: "/a"}, "berth.run_dir": {Flag: "--run-dir", Shadowed: "/r"}, "berth.log_dir": {File: "f"}}
	next := map[string]Origin{"berth.root": {Flag: "--root", Shadowed: "/b"}, "berth.run_dir": {Flag: "--run-dir", Shadowed: "/r"}, "berth.log_dir": {File: "g"}}
	got := HiddenByFlags(old, next)
	want := []Change{{Key: "berth.root", Old: "/a", New: "/b", Reason: "set by flag --root"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("HiddenByFlags = %+v, want %+v", got, want)
	}
}
