// Command berthd is the berth CRI daemon.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/daemon"
	"github.com/berth-cri/berth/internal/nsmgr"
)

func main() {
	// The namespace-pinning helper is berthd re-executed; it must run
	// before cobra sees the hidden argument.
	if len(os.Args) > 1 && os.Args[1] == nsmgr.ChildCommand {
		os.Exit(nsmgr.ChildMain())
	}
	root := &cobra.Command{
		Use:   "berthd",
		Short: "berth: a Kubernetes container runtime (CRI)",
		Long: `berthd serves the Kubernetes CRI on a unix socket and runs each container
under conmon and runc.

It reads --config, then every *.toml in --config-dir in lexical order, then
its flags. Each flag overrides the config key shown in brackets; the default
shown is the key's built-in one, which the files may change. "berthd config"
prints the configuration in effect. SIGHUP re-reads the files and applies the
keys marked Reloadable; it logs each change and each key that needs a restart.`,
		Version:       daemon.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
	}
	flags := config.BindFlags(root.PersistentFlags())
	root.RunE = func(cmd *cobra.Command, _ []string) error {
		return daemon.Run(cmd.Context(), flags.Loader())
	}
	root.AddCommand(&cobra.Command{
		Use:   "config",
		Short: "Print the effective configuration as commented TOML",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := flags.Loader().Load()
			if err != nil {
				return err
			}
			out, err := cfg.WriteTOML()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	})
	root.AddCommand(&cobra.Command{
		Use:   "wipe",
		Short: "Remove every pod and container (kill them, tear down networks, delete their layers and records); images stay",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return daemon.WipeMain(cmd.Context(), flags.Loader())
		},
	})
	if err := root.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "berthd:", err)
		os.Exit(1)
	}
}
