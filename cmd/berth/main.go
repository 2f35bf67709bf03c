// Command berth is the operator CLI of berth: a crictl-style client of the
// CRI socket, plus offline image import and export.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// globals are the flags every subcommand shares.
type globals struct {
	endpoint string
	timeout  string
	config   string
}

func main() {
	g := &globals{}
	root := &cobra.Command{
		Use:           "berth",
		Short:         "Operate berth, the Kubernetes container runtime",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVarP(&g.endpoint, "runtime-endpoint", "r", "unix:///run/berth/berth.sock", "CRI endpoint of berthd")
	root.PersistentFlags().StringVar(&g.timeout, "timeout", "2m", "timeout of each CRI call")
	root.PersistentFlags().StringVarP(&g.config, "config", "c", "/etc/berth/berth.toml", "berthd config file (for commands that open storage directly)")
	root.AddCommand(infoCommands(g)...)
	root.AddCommand(imageCommands(g)...)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "berth:", err)
		os.Exit(1)
	}
}
