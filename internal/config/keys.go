package config

import (
	"reflect"
	"regexp"
	"strings"

	"github.com/BurntSushi/toml"
)

// retired are keys berth used to accept, with what to do instead. They
// are refused like unknown keys, with this advice.
var retired = map[string]string{
	"berth.image.default_transport": "removed: berth pulls only from registries (docker://), so a name needs no transport; delete the key",
}

// A TOML key part: bare, "basic" or 'literal'.
const keyPart = `(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')`

var (
	tableLine = regexp.MustCompile(`^\s*\[\[?\s*(` + keyPart + `(?:\s*\.\s*` + keyPart + `)*)\s*\]\]?`)
	keyLine   = regexp.MustCompile(`^\s*(` + keyPart + `(?:\s*\.\s*` + keyPart + `)*)\s*=`)
	partRe    = regexp.MustCompile(keyPart)
)

// keyLines maps each table and key defined in a TOML document to its
// line (from 1). BurntSushi/toml keeps key positions private, and a
// line-oriented scan is enough for config files: keys inside inline
// tables and multi-line values are skipped (lineOf falls back to the
// enclosing table).
func keyLines(data string) map[string]int {
	out := map[string]int{}
	var table []string
	inString := ""
	for i, line := range strings.Split(data, "\n") {
		if inString != "" {
			if strings.Count(line, inString)%2 == 1 {
				inString = ""
			}
			continue
		}
		if m := tableLine.FindStringSubmatch(line); m != nil {
			table = splitKey(m[1])
			out[toml.Key(table).String()] = i + 1
			continue
		}
		if m := keyLine.FindStringSubmatch(line); m != nil {
			k := append(append([]string{}, table...), splitKey(m[1])...)
			out[toml.Key(k).String()] = i + 1
		}
		for _, q := range []string{`"""`, `'''`} {
			if strings.Count(line, q)%2 == 1 {
				inString = q
			}
		}
	}
	return out
}

// splitKey splits a dotted TOML key into its unquoted parts.
func splitKey(s string) []string {
	parts := partRe.FindAllString(s, -1)
	for i, p := range parts {
		if len(p) >= 2 && (p[0] == '"' || p[0] == '\'') {
			parts[i] = strings.ReplaceAll(p[1:len(p)-1], `\"`, `"`)
		}
	}
	return parts
}

// lineOf is the line of key in lines, else of its closest enclosing table.
func lineOf(lines map[string]int, key toml.Key) int {
	for k := key; len(k) > 0; k = k[:len(k)-1] {
		if l, ok := lines[k.String()]; ok {
			return l
		}
	}
	return 0
}

// tableType is the Go type of the table at key parts (a struct, or the
// element of a map of tables), nil when berth has no such table.
func tableType(parts []string) reflect.Type {
	if len(parts) == 0 || parts[0] != "berth" {
		return nil
	}
	t := reflect.TypeOf(Berth{})
	for _, p := range parts[1:] {
		if t.Kind() == reflect.Map {
			t = t.Elem()
			continue
		}
		f, ok := fieldByTag(t, p)
		if !ok || !(isTable(f.Type) || f.Type.Kind() == reflect.Map) {
			return nil
		}
		t = f.Type
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	return t
}

func fieldByTag(t reflect.Type, tag string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); f.Tag.Get("toml") == tag {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// suggest names the known key an unknown one most likely meant: a key of
// the same table within two edits (log_levle → log_level), else the same
// name in another table (log_level under [berth] → berth.runtime.log_level).
func suggest(key toml.Key) string {
	if len(key) < 2 {
		return ""
	}
	name := key[len(key)-1]
	if t := tableType(key[:len(key)-1]); t != nil {
		best, bestDist := "", 3
		for i := range t.NumField() {
			cand := t.Field(i).Tag.Get("toml")
			if d := editDistance(name, cand); d < bestDist && d < len(name) {
				best, bestDist = cand, d
			}
		}
		if best != "" {
			return toml.Key(append(append([]string{}, key[:len(key)-1]...), best)).String()
		}
	}
	var found []string
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			k := prefix + "." + f.Tag.Get("toml")
			if isTable(f.Type) {
				walk(k, f.Type)
			} else if f.Tag.Get("toml") == name {
				found = append(found, k)
			}
		}
	}
	walk("berth", reflect.TypeOf(Berth{}))
	if len(found) == 1 {
		return found[0]
	}
	return ""
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of neighbours cost one.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// fieldByKey is the field of c that a leaf key such as
// "berth.runtime.log_level" names, with its declaration; ok is false for
// unknown keys, tables and keys inside maps.
func fieldByKey(c *Config, key string) (v reflect.Value, sf reflect.StructField, ok bool) {
	parts := strings.Split(key, ".")
	if len(parts) < 2 || parts[0] != "berth" {
		return reflect.Value{}, sf, false
	}
	v = reflect.ValueOf(&c.Berth).Elem()
	for _, p := range parts[1:] {
		if !isTable(v.Type()) {
			return reflect.Value{}, sf, false
		}
		if sf, ok = fieldByTag(v.Type(), p); !ok {
			return reflect.Value{}, sf, false
		}
		v = v.FieldByIndex(sf.Index)
	}
	return v, sf, !isTable(v.Type()) && v.Kind() != reflect.Map
}

// describe is the help of a key: its comment, and whether SIGHUP applies
// a change to it.
func describe(sf reflect.StructField) string {
	if sf.Tag.Get(reloadTag) == "true" {
		return sf.Tag.Get("comment") + " Reloadable."
	}
	return sf.Tag.Get("comment")
}
