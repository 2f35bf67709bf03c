package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// reloadTag marks a field that SIGHUP applies to a running daemon:
// `reload:"true"`. It is the only list of reloadable keys; Merge, the
// printed config and the README follow from it.
const reloadTag = "reload"

// Change is one key whose value differs between two snapshots.
type Change struct {
	Key      string
	Old, New string
	// Reason says why a change was not applied: a refused reloadable
	// change, or a file change hidden by a flag.
	Reason string
}

// Reload is the outcome of merging a newly loaded snapshot into the
// running one. Every key that differs is in exactly one of the lists.
type Reload struct {
	// Config is the snapshot to run with: the old one with the applied
	// changes.
	Config *Config
	// Applied are the reloadable changes now in force.
	Applied []Change
	// Restart are changes to keys that only take effect on a restart.
	Restart []Change
	// Refused are reloadable changes that do not fit the running daemon,
	// e.g. a default_runtime naming a handler added since it started.
	Refused []Change
}

// Merge returns the snapshot to run with after a reload: old, with the
// fields tagged reloadable taken from next, and what became of each key
// that differs. A reloadable change that leaves the merged snapshot
// invalid is refused and the old value kept. Neither input is modified.
func Merge(old, next *Config) Reload {
	merged := *old
	r := Reload{Config: &merged}
	undo := map[string]func(){}
	r.mergeTable("berth", reflect.ValueOf(&merged.Berth).Elem(), reflect.ValueOf(next.Berth), undo)
	for len(r.Applied) > 0 {
		err := merged.Validate()
		if err == nil {
			break
		}
		var blamed []*FieldError
		for _, fe := range FieldErrors(err) {
			if _, ok := undo[fe.Key]; ok {
				blamed = append(blamed, fe)
			}
		}
		if len(blamed) == 0 {
			// Cannot happen while old and next are each valid; keep the
			// running config whole rather than run an invalid one.
			for k := range undo {
				blamed = append(blamed, &FieldError{Key: k, Reason: err})
			}
		}
		for _, fe := range blamed {
			r.refuse(fe, undo)
		}
	}
	for _, l := range []*[]Change{&r.Applied, &r.Restart, &r.Refused} {
		slices.SortFunc(*l, func(a, b Change) int { return strings.Compare(a.Key, b.Key) })
	}
	return r
}

// mergeTable walks one table of the merged snapshot (m, holding the old
// values) alongside next's, copying the reloadable fields that differ.
func (r *Reload) mergeTable(prefix string, m, next reflect.Value, undo map[string]func()) {
	t := m.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		key := prefix + "." + f.Tag.Get("toml")
		mv, nv := m.Field(i), next.Field(i)
		if isTable(f.Type) {
			r.mergeTable(key, mv, nv, undo)
			continue
		}
		changes := diff(key, mv, nv)
		if len(changes) == 0 {
			continue
		}
		if f.Tag.Get(reloadTag) != "true" {
			r.Restart = append(r.Restart, changes...)
			continue
		}
		prev := reflect.New(f.Type).Elem()
		prev.Set(mv)
		undo[key] = func() { mv.Set(prev) }
		mv.Set(nv)
		r.Applied = append(r.Applied, changes...)
	}
}

// refuse puts back the old value of fe's key and moves its changes from
// Applied to Refused.
func (r *Reload) refuse(fe *FieldError, undo map[string]func()) {
	put, ok := undo[fe.Key]
	if !ok {
		return
	}
	put()
	delete(undo, fe.Key)
	r.Applied = slices.DeleteFunc(r.Applied, func(c Change) bool {
		if c.Key != fe.Key && !strings.HasPrefix(c.Key, fe.Key+".") {
			return false
		}
		c.Reason = fe.Reason.Error()
		r.Refused = append(r.Refused, c)
		return true
	})
}

// HiddenByFlags lists the keys set by a command-line flag whose value in
// the files changed between two loads (see Loader.LoadWithOrigins): the
// flag still wins, and the operator who edited the file should know.
func HiddenByFlags(old, next map[string]Origin) []Change {
	var out []Change
	for key, o := range next {
		if o.Flag != "" && old[key].Shadowed != o.Shadowed {
			out = append(out, Change{Key: key, Old: old[key].Shadowed, New: o.Shadowed, Reason: "set by flag " + o.Flag})
		}
	}
	slices.SortFunc(out, func(a, b Change) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// unset stands for the value of a key that one side lacks (a runtime
// handler added or removed).
const unset = "(unset)"

// diff lists the leaf keys under key whose printed values differ.
func diff(key string, old, next reflect.Value) []Change {
	o, n := map[string]string{}, map[string]string{}
	leaves(key, old, o)
	leaves(key, next, n)
	var out []Change
	for k, ov := range o {
		if nv, ok := n[k]; !ok {
			out = append(out, Change{Key: k, Old: ov, New: unset})
		} else if nv != ov {
			out = append(out, Change{Key: k, Old: ov, New: nv})
		}
	}
	for k, nv := range n {
		if _, ok := o[k]; !ok {
			out = append(out, Change{Key: k, Old: unset, New: nv})
		}
	}
	return out
}

// isTable reports whether a field of type t is a TOML table berth walks
// into (a struct other than a value type such as Duration).
func isTable(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && t != reflect.TypeOf(Duration{})
}

// leaves maps every leaf key under prefix to its printed value; a map
// (runtime handlers) contributes one key per entry and field.
func leaves(prefix string, v reflect.Value, out map[string]string) {
	switch {
	case isTable(v.Type()):
		for i := range v.NumField() {
			leaves(prefix+"."+v.Type().Field(i).Tag.Get("toml"), v.Field(i), out)
		}
	case v.Kind() == reflect.Map:
		for _, k := range v.MapKeys() {
			leaves(prefix+"."+k.String(), v.MapIndex(k), out)
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

// ReloadableKeys lists the keys a SIGHUP applies, in schema order.
func ReloadableKeys() []string {
	var out []string
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			key := prefix + "." + f.Tag.Get("toml")
			switch {
			case isTable(f.Type):
				walk(key, f.Type)
			case f.Tag.Get(reloadTag) == "true":
				out = append(out, key)
			}
		}
	}
	walk("berth", reflect.TypeOf(Berth{}))
	return out
}

// FieldErrors lists the field errors in err (one, or those joined by
// Validate).
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, FieldErrors(e)...)
		}
		return out
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		out = append(out, fe)
	}
	return out
}
