package config

import (
	"bytes"
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
	// Overrides applies command-line flags last; may be nil.
	Overrides func(*Config)
}

// Load builds a validated snapshot: defaults, then the file, then each
// drop-in, then the overrides. Unknown keys are errors naming file and key.
func (l Loader) Load() (*Config, error) {
	c := Default()
	origin := map[string]string{} // key -> last file that set it
	if l.File != "" {
		if err := decodeFile(c, l.File, origin); err != nil {
			if !errors.Is(err, fs.ErrNotExist) || l.FileRequired {
				return nil, err
			}
		}
	}
	if l.DropInDir != "" && dirExists(l.DropInDir) {
		files, err := filepath.Glob(filepath.Join(l.DropInDir, "*.toml"))
		if err != nil {
			return nil, fmt.Errorf("list drop-ins in %s: %w", l.DropInDir, err)
		}
		sort.Strings(files)
		for _, f := range files {
			if err := decodeFile(c, f, origin); err != nil {
				return nil, err
			}
		}
	}
	if l.Overrides != nil {
		l.Overrides(c)
	}
	normalize(reflect.ValueOf(c).Elem())
	if err := c.Validate(); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			if f, ok := origin[fe.Key]; ok {
				return nil, fmt.Errorf("config %s: %w", f, err)
			}
		}
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	return c, nil
}

func decodeFile(c *Config, path string, origin map[string]string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config %s: %w", path, err)
	}
	md, err := toml.Decode(string(data), c)
	if err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("config %s: unknown key %s", path, strings.Join(keys, ", "))
	}
	for _, k := range md.Keys() {
		origin[k.String()] = path
	}
	return nil
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
		fmt.Fprintf(buf, "\n# %s\n%s", f.Tag.Get("comment"), line)
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
