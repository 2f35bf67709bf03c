// Command berth is the operator CLI of berth: a crictl-style client of the
// CRI socket, plus offline image import, export and copy.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berth-cri/berth/internal/version"
)

// defaultEndpoint is berthd's CRI socket.
const defaultEndpoint = "unix:///run/berth/berth.sock"

// globals are the flags every subcommand shares.
type globals struct {
	endpoint      string
	imageEndpoint string
	timeout       string
	config        string
	clientConfig  string
	debug         bool
	// flags lets connect tell flags given on the command line from
	// defaults, which the client config file may override.
	flags *pflag.FlagSet
}

func main() {
	g := &globals{}
	root := newRoot(g)
	if err := root.Execute(); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(os.Stderr, "berth:", ee.msg)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "berth:", plainError(err))
		os.Exit(1)
	}
}

// newRoot builds the whole command tree.
func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "berth",
		Short: "Operate berth, the Kubernetes container runtime",
		Long: `berth is a CRI client for node operators, in the manner of crictl.

It talks to berthd's CRI socket by default; --runtime-endpoint, the
CONTAINER_RUNTIME_ENDPOINT variable or crictl's /etc/crictl.yaml point it at
another CRI runtime. Short ID prefixes are accepted wherever an ID is.`,
		Example: `  berth pods
  berth ps -a
  berth -r unix:///run/containerd/containerd.sock images
  berth logs -f 3f2a`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Global flags before the command are the root's, as in crictl: in
		// "berth -r ENDPOINT logs -r CTR" the first -r is the endpoint and
		// the second logs' --reopen.
		TraverseChildren: true,
		// The client's own version; `berth version` asks the runtime.
		Version: version.Version,
	}
	root.SetVersionTemplate("berth version {{.Version}}\n")
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetHelpCommandGroupID("runtime")
	pf := root.PersistentFlags()
	pf.StringVarP(&g.endpoint, "runtime-endpoint", "r", defaultEndpoint, "CRI endpoint (env CONTAINER_RUNTIME_ENDPOINT)")
	pf.StringVar(&g.imageEndpoint, "image-endpoint", "", "CRI image endpoint, the runtime endpoint when empty (env IMAGE_SERVICE_ENDPOINT)")
	pf.StringVar(&g.timeout, "timeout", "2m", "timeout of each CRI call (a duration, or seconds)")
	pf.StringVarP(&g.config, "config", "c", "/etc/berth/berth.toml", "berthd config file (for commands that open storage directly)")
	pf.StringVar(&g.clientConfig, "client-config", "", "client config file, crictl's format (env CRI_CONFIG_FILE; default /etc/crictl.yaml)")
	pf.BoolVarP(&g.debug, "debug", "D", false, "print each CRI request and response to stderr")
	g.flags = pf

	root.AddGroup(
		&cobra.Group{ID: "pods", Title: "Pod sandboxes:"},
		&cobra.Group{ID: "containers", Title: "Containers:"},
		&cobra.Group{ID: "images", Title: "Images:"},
		&cobra.Group{ID: "runtime", Title: "Runtime and client:"},
	)
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add("runtime", infoCommands(g)...)
	add("runtime", configCommand(g), completionCommand(root), generateCommand(g))
	add("runtime", statsCommands(g)...)
	add("pods", podCommands(g)...)
	add("containers", containerCommands(g)...)
	add("containers", logsCommand(g))
	add("containers", streamCommands(g)...)
	add("images", imagesCommands(g)...)
	add("images", imageCommands(g)...)
	addImageCopy(root, g)
	return root
}

// localGlobal re-declares a global flag on cmd under its long name only,
// freeing its shorthand for a flag of cmd's own: crictl's logs -r is
// --reopen while its global -r is --runtime-endpoint. Setting the local
// flag sets the global one, which then counts as given on the command line.
func localGlobal(cmd *cobra.Command, global *pflag.FlagSet, name string) {
	f := global.Lookup(name)
	set := func(v string) error { return global.Set(name, v) }
	cmd.Flags().AddFlag(&pflag.Flag{Name: f.Name, Usage: f.Usage, DefValue: f.DefValue, Value: &globalValue{Value: f.Value, set: set}})
}

// globalValue is a global flag's value set through the global flag set.
type globalValue struct {
	pflag.Value
	set func(string) error
}

func (v *globalValue) Set(s string) error { return v.set(s) }
