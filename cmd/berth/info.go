package main

import (
	"fmt"

	"github.com/spf13/cobra"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// infoCommands are the commands about the runtime itself.
func infoCommands(g *globals) []*cobra.Command {
	var versionOut outputFormat
	version := &cobra.Command{
		Use:     "version",
		Short:   "Show the runtime's name and versions",
		Example: "  berth version\n  berth version -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withClient(func(c *client) error {
				v, err := call(c, "get version", c.runtime.Version, &runtimeapi.VersionRequest{})
				if err != nil {
					return err
				}
				if !versionOut.table() {
					return printProto(cmd.OutOrStdout(), versionOut, v)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Version:           %s\nRuntimeName:       %s\nRuntimeVersion:    %s\nRuntimeApiVersion: %s\n",
					v.Version, v.RuntimeName, v.RuntimeVersion, v.RuntimeApiVersion)
				return nil
			})
		},
	}
	addOutputFlag(version, &versionOut, formatTable, formatJSON, formatYAML)

	var infoOut outputFormat
	info := &cobra.Command{
		Use:   "info",
		Short: "Show the runtime's status, handlers, features and config",
		Long: `Show the runtime's conditions (RuntimeReady, NetworkReady), its runtime
handlers and features, and the verbose information it reports (berthd
reports its effective configuration).`,
		Example: "  berth info\n  berth info -o yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withClient(func(c *client) error {
				st, err := call(c, "get runtime status", c.runtime.Status, &runtimeapi.StatusRequest{Verbose: true})
				if err != nil {
					return err
				}
				obj, err := protoObject(st.Status)
				if err != nil {
					return err
				}
				doc := newStatusDoc(obj, st.Info)
				for _, f := range []string{"runtimeHandlers", "features"} {
					if doc[f], err = protoField(st, f); err != nil {
						return err
					}
				}
				return printStatusDocs(cmd.OutOrStdout(), infoOut, []statusDoc{doc})
			})
		},
	}
	addOutputFlag(info, &infoOut, formatJSON, formatYAML)
	return []*cobra.Command{version, info}
}
