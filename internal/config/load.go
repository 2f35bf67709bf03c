package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// Loader knows where the configuration comes from, so that SIGHUP can
// build a new snapshot exactly the way the first one was built.
type Loader struct {
	// File is the main TOML file. A missing default file is not an error.
	File string
	// DropInDir holds *.toml files merged over File in lexical order.
	DropInDir string
	// FileRequired makes a missing File an error (it was named explicitly).
	FileRequired bool
	// Overrides applies command-line flags last and returns the keys it
	// set, each with the flag that set it; may be nil.
	Overrides func(*Config) map[string]string
}

// Origin says where a key's value came from.
type Origin struct {
	// File and Line locate the last file setting that set the key.
	File string
	Line int
	// Flag is the command-line flag that overrode the files ("--root").
	Flag string
	// Shadowed is, for a key set by a flag, the value the files and
	// defaults gave it, which the flag replaced.
	Shadowed string
}

func (o Origin) String() string {
	switch {
	case o.Flag != "":
		return "flag " + o.Flag
	case o.File != "" && o.Line > 0:
		return fmt.Sprintf("%s:%d", o.File, o.Line)
	case o.File != "":
		return o.File
	}
	return "default"
}

// originOf is where key was set, else where its closest enclosing table
// was (a handler table that lacks runtime_path).
func originOf(origins map[string]Origin, key string) Origin {
	for k := key; k != ""; {
		if o, ok := origins[k]; ok {
			return o
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return Origin{}
}

// Problem is one thing wrong with the configuration.
type Problem struct {
	Origin
	// Key is the key at fault, "" for a file that cannot be read.
	Key    string
	Reason string
}

func (p Problem) String() string {
	if p.Key == "" {
		return p.Origin.String() + ": " + p.Reason
	}
	return p.Origin.String() + ": " + p.Key + ": " + p.Reason
}

// LoadError lists every problem found in the files and flags, so that
// one run of berthd (or `berthd config`) shows all of them.
type LoadError struct{ Problems []Problem }

func (e *LoadError) Error() string {
	if len(e.Problems) == 1 {
		return "invalid config: " + e.Problems[0].String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "invalid config, %d problems:", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  " + p.String())
	}
	return b.String()
}

// Load builds a validated snapshot: defaults, then the file, then each
// drop-in, then the overrides. Unknown keys and bad values are reported
// together in a *LoadError naming file, line and key.
func (l Loader) Load() (*Config, error) {
	c, _, err := l.LoadWithOrigins()
	return c, err
}

// LoadWithOrigins is Load that also says where each key set by a file or
// a flag came from.
func (l Loader) LoadWithOrigins() (*Config, map[string]Origin, error) {
	c := Default()
	origins := map[string]Origin{}
	var problems []Problem
	var files []string
	if l.File != "" {
		if _, err := os.Stat(l.File); err == nil || !errors.Is(err, fs.ErrNotExist) || l.FileRequired {
			files = append(files, l.File)
		}
	}
	if l.DropInDir != "" && dirExists(l.DropInDir) {
		dropIns, err := filepath.Glob(filepath.Join(l.DropInDir, "*.toml"))
		if err != nil {
			return nil, nil, fmt.Errorf("list drop-ins in %s: %w", l.DropInDir, err)
		}
		sort.Strings(dropIns)
		files = append(files, dropIns...)
	}
	for _, f := range files {
		problems = append(problems, decodeFile(c, f, origins)...)
	}
	if l.Overrides != nil {
		before := map[string]string{}
		leaves("berth", reflect.ValueOf(c.Berth), before)
		for key, flag := range l.Overrides(c) {
			origins[key] = Origin{Flag: flag, Shadowed: before[key]}
		}
	}
	normalize(reflect.ValueOf(c).Elem())
	for _, fe := range FieldErrors(c.Validate()) {
		problems = append(problems, Problem{Origin: originOf(origins, fe.Key), Key: fe.Key, Reason: fe.Reason.Error()})
	}
	if len(problems) > 0 {
		return nil, nil, &LoadError{Problems: problems}
	}
	return c, origins, nil
}

// decodeFile merges one TOML file into c, recording where each key it
// sets is, and returns what is wrong with it.
func decodeFile(c *Config, path string, origins map[string]Origin) []Problem {
	data, err := os.ReadFile(path)
	if err != nil {
		return []Problem{{Origin: Origin{File: path}, Reason: err.Error()}}
	}
	lines := keyLines(string(data))
	md, err := toml.Decode(string(data), c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return []Problem{{Origin: Origin{File: path, Line: pe.Position.Line}, Key: pe.LastKey, Reason: pe.Message}}
		}
		return []Problem{{Origin: Origin{File: path}, Reason: strings.TrimPrefix(err.Error(), "toml: ")}}
	}
	var problems []Problem
	undecoded := map[string]bool{}
	for _, k := range md.Undecoded() {
		undecoded[k.String()] = true
	}
	for _, k := range md.Undecoded() {
		if len(k) > 1 && undecoded[k[:len(k)-1].String()] {
			continue // inside an unknown table: the table is reported
		}
		p := Problem{Origin: Origin{File: path, Line: lineOf(lines, k)}, Key: k.String(), Reason: "unknown key"}
		if advice, ok := retired[k.String()]; ok {
			p.Reason = advice
		} else if s := suggest(k); s != "" {
			p.Reason = fmt.Sprintf("unknown key (did you mean %s?)", s)
		}
		problems = append(problems, p)
	}
	for _, k := range md.Keys() {
		origins[k.String()] = Origin{File: path, Line: lineOf(lines, k)}
	}
	return problems
}

// normalize turns nil lists into empty ones, so a key left out and a key
// set to [] give the same snapshot (and printing round-trips exactly).
func normalize(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			normalize(v.Field(i))
		}
	case reflect.Slice:
		if v.IsNil() {
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(v.MapIndex(k))
			normalize(e)
			v.SetMapIndex(k, e)
		}
	}
}

// WriteTOML prints c as commented TOML that Load reads back unchanged.
func (c *Config) WriteTOML() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# berth configuration. Printed by `berthd config`; usable as /etc/berth/berth.toml.\n")
	if err := writeTable(&buf, "berth", reflect.ValueOf(c.Berth)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeTable prints the scalar fields of v under [name], then its sub-tables.
func writeTable(buf *bytes.Buffer, name string, v reflect.Value) error {
	fmt.Fprintf(buf, "\n[%s]\n", name)
	t := v.Type()
	var subs []int
	for i := range t.NumField() {
		f := t.Field(i)
		key := f.Tag.Get("toml")
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(Duration{}) || f.Type.Kind() == reflect.Map {
			subs = append(subs, i)
			continue
		}
		line, err := encodeKey(key, v.Field(i).Interface())
		if err != nil {
			return fmt.Errorf("print %s.%s: %w", name, key, err)
		}
		fmt.Fprintf(buf, "\n# %s\n%s", describe(f), line)
	}
	for _, i := range subs {
		f := t.Field(i)
		key := name + "." + f.Tag.Get("toml")
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct {
			if err := writeTable(buf, key, fv); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(buf, "\n# %s\n", f.Tag.Get("comment"))
		names := make([]string, 0, fv.Len())
		for _, k := range fv.MapKeys() {
			names = append(names, k.String())
		}
		slices.Sort(names)
		for _, n := range names {
			if err := writeTable(buf, key+"."+n, fv.MapIndex(reflect.ValueOf(n))); err != nil {
				return err
			}
		}
	}
	return nil
}

// MarshalJSON writes c under its TOML key names, as the files and
// `berthd config` spell them: {"berth": {"runtime": {"ctr_stop_timeout": 30}}}.
func (c Config) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{"berth": tree(reflect.ValueOf(c.Berth))})
}

// tree turns a table into nested maps keyed by TOML names; values that
// are not tables stay as they are (Duration marshals as text).
func tree(v reflect.Value) any {
	switch {
	case isTable(v.Type()):
		m := map[string]any{}
		for i := range v.NumField() {
			m[v.Type().Field(i).Tag.Get("toml")] = tree(v.Field(i))
		}
		return m
	case v.Kind() == reflect.Map:
		m := map[string]any{}
		for _, k := range v.MapKeys() {
			m[k.String()] = tree(v.MapIndex(k))
		}
		return m
	}
	return v.Interface()
}

// encodeKey lets the TOML encoder quote one value; an empty list is kept
// visible so the printed file documents the key.
func encodeKey(key string, val any) (string, error) {
	if rv := reflect.ValueOf(val); rv.Kind() == reflect.Slice && rv.Len() == 0 {
		return key + " = []\n", nil
	}
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(map[string]any{key: val}); err != nil {
		return "", err
	}
	return b.String(), nil
}
