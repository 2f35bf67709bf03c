package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// defaultClientConfig is crictl's client config file, which berth honours.
const defaultClientConfig = "/etc/crictl.yaml"

// clientConfigKeys are the keys of crictl's config file that berth uses,
// with the kind of value each takes.
func clientConfigKeys() map[string]string {
	return map[string]string{
		"runtime-endpoint":     "string",
		"image-endpoint":       "string",
		"timeout":              "int",
		"debug":                "bool",
		"pull-image-on-create": "bool",
		"disable-pull-on-run":  "bool",
	}
}

// settings are the effective client settings: flags given on the command
// line, then the environment, then the config file, then the defaults.
type settings struct {
	runtimeEndpoint   string
	imageEndpoint     string
	timeout           time.Duration
	debug             bool
	pullImageOnCreate bool
	disablePullOnRun  bool
}

// clientConfigPath is the config file in effect.
func (g *globals) clientConfigPath() string {
	if g.clientConfig != "" {
		return g.clientConfig
	}
	if p := os.Getenv("CRI_CONFIG_FILE"); p != "" {
		return p
	}
	return defaultClientConfig
}

// loadClientConfig reads a crictl-style YAML file; a missing file is empty.
func loadClientConfig(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]any{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read client config: %w", err)
	}
	m := map[string]any{}
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("parse client config %s: %w", path, err)
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

// settings resolves the effective client settings.
func (g *globals) settings() (settings, error) {
	file, err := loadClientConfig(g.clientConfigPath())
	if err != nil {
		return settings{}, err
	}
	str := func(k string) string { s, _ := file[k].(string); return s }
	boolean := func(k string) bool { b, _ := file[k].(bool); return b }
	changed := func(name string) bool { return g.flags != nil && g.flags.Changed(name) }

	s := settings{
		runtimeEndpoint:   g.endpoint,
		imageEndpoint:     g.imageEndpoint,
		debug:             g.debug || boolean("debug"),
		pullImageOnCreate: boolean("pull-image-on-create"),
		disablePullOnRun:  boolean("disable-pull-on-run"),
	}
	if !changed("runtime-endpoint") {
		if env := os.Getenv("CONTAINER_RUNTIME_ENDPOINT"); env != "" {
			s.runtimeEndpoint = env
		} else if v := str("runtime-endpoint"); v != "" {
			s.runtimeEndpoint = v
		}
	}
	if !changed("image-endpoint") {
		if env := os.Getenv("IMAGE_SERVICE_ENDPOINT"); env != "" {
			s.imageEndpoint = env
		} else if v := str("image-endpoint"); v != "" {
			s.imageEndpoint = v
		}
	}
	if s.imageEndpoint == "" {
		s.imageEndpoint = s.runtimeEndpoint
	}
	timeout := g.timeout
	if !changed("timeout") {
		if v, ok := file["timeout"].(float64); ok && v > 0 {
			timeout = strconv.FormatFloat(v, 'f', -1, 64)
		}
	}
	if s.timeout, err = parseTimeout(timeout); err != nil {
		return settings{}, err
	}
	return s, nil
}

// parseTimeout accepts a Go duration or, as crictl.yaml has it, seconds.
func parseTimeout(v string) (time.Duration, error) {
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		return time.Duration(secs * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("--timeout %q: want a duration such as 30s, or seconds", v)
	}
	return d, nil
}

// configCommand views and edits the client config file.
func configCommand(g *globals) *cobra.Command {
	var get string
	var set []string
	var list bool
	cmd := &cobra.Command{
		Use:   "config [KEY VALUE]",
		Short: "View or change the client config (crictl's /etc/crictl.yaml)",
		Long: `View or change the client config file. berth reads crictl's file
(/etc/crictl.yaml, or CRI_CONFIG_FILE, or --client-config) so the two tools
share one setting. Keys: ` + strings.Join(sortedKeys(clientConfigKeys()), ", ") + `.

With no arguments it prints the effective settings and where the file is.`,
		Example: `  berth config --list
  berth config --get runtime-endpoint
  berth config --set runtime-endpoint=unix:///run/berth/berth.sock,timeout=10
  berth config image-endpoint unix:///run/berth/berth.sock`,
		Args: cobra.RangeArgs(0, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := g.clientConfigPath()
			switch {
			case get != "":
				s, err := g.settings()
				if err != nil {
					return err
				}
				v, ok := settingValues(s)[get]
				if !ok {
					return fmt.Errorf("unknown config key %q (known: %s)", get, strings.Join(sortedKeys(clientConfigKeys()), ", "))
				}
				fmt.Fprintln(cmd.OutOrStdout(), v)
				return nil
			case len(set) > 0 || len(args) > 0:
				pairs := set
				if len(args) == 2 {
					pairs = append(pairs, args[0]+"="+args[1])
				} else if len(args) == 1 {
					return errors.New("give a KEY and a VALUE, or use --set KEY=VALUE")
				}
				return writeClientConfig(path, pairs)
			default:
				_ = list // --list and no arguments both print the settings.
				s, err := g.settings()
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 3, ' ', 0)
				fmt.Fprintln(w, "KEY\tVALUE")
				vals := settingValues(s)
				for _, k := range sortedKeys(clientConfigKeys()) {
					fmt.Fprintf(w, "%s\t%s\n", k, vals[k])
				}
				fmt.Fprintf(w, "(file)\t%s\n", path)
				return w.Flush()
			}
		},
	}
	cmd.Flags().StringVar(&get, "get", "", "print the effective value of one key")
	cmd.Flags().StringSliceVar(&set, "set", nil, "set KEY=VALUE in the config file (repeatable, or comma separated)")
	cmd.Flags().BoolVar(&list, "list", false, "print every key with its effective value")
	return cmd
}

// settingValues renders the effective settings by config key.
func settingValues(s settings) map[string]string {
	return map[string]string{
		"runtime-endpoint":     s.runtimeEndpoint,
		"image-endpoint":       s.imageEndpoint,
		"timeout":              strconv.Itoa(int(s.timeout / time.Second)),
		"debug":                strconv.FormatBool(s.debug),
		"pull-image-on-create": strconv.FormatBool(s.pullImageOnCreate),
		"disable-pull-on-run":  strconv.FormatBool(s.disablePullOnRun),
	}
}

// writeClientConfig applies KEY=VALUE pairs to the file, keeping the keys
// berth does not know, and writes it atomically.
func writeClientConfig(path string, pairs []string) error {
	m, err := loadClientConfig(path)
	if err != nil {
		return err
	}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return fmt.Errorf("--set %q: want KEY=VALUE", p)
		}
		kind, known := clientConfigKeys()[k]
		if !known {
			return fmt.Errorf("unknown config key %q (known: %s)", k, strings.Join(sortedKeys(clientConfigKeys()), ", "))
		}
		switch kind {
		case "int":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return fmt.Errorf("%s: want a whole number of seconds, got %q", k, v)
			}
			m[k] = n
		case "bool":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("%s: want true or false, got %q", k, v)
			}
			m[k] = b
		default:
			m[k] = v
		}
	}
	data, err := yaml.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode client config: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create config dir: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write client config: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write client config: %w", err)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
