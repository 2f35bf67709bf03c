package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// infoCommands are the read-only commands about the runtime and images.
func infoCommands(g *globals) []*cobra.Command {
	version := &cobra.Command{
		Use:   "version",
		Short: "Show the runtime's name and versions",
		Args:  cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			c, err := g.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := c.ctx()
			defer cancel()
			v, err := c.runtime.Version(ctx, &runtimeapi.VersionRequest{})
			if err != nil {
				return err
			}
			fmt.Printf("RuntimeName:       %s\nRuntimeVersion:    %s\nRuntimeApiVersion: %s\n", v.RuntimeName, v.RuntimeVersion, v.RuntimeApiVersion)
			return nil
		},
	}
	images := &cobra.Command{
		Use:   "images [NAME]",
		Short: "List images",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			c, err := g.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := c.ctx()
			defer cancel()
			req := &runtimeapi.ListImagesRequest{}
			if len(args) == 1 {
				req.Filter = &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: args[0]}}
			}
			resp, err := c.images.ListImages(ctx, req)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "IMAGE\tTAG\tIMAGE ID\tSIZE\tPINNED")
			for _, img := range resp.Images {
				tags := img.RepoTags
				if len(tags) == 0 {
					tags = []string{"<none>:<none>"}
				}
				for _, t := range tags {
					repo, tag := t, "<none>"
					if i := strings.LastIndex(t, ":"); i > strings.LastIndex(t, "/") {
						repo, tag = t[:i], t[i+1:]
					}
					fmt.Fprintf(w, "%s\t%s\t%.13s\t%s\t%v\n", repo, tag, strings.TrimPrefix(img.Id, "sha256:"), humanSize(img.Size), img.Pinned)
				}
			}
			return w.Flush()
		},
	}
	return []*cobra.Command{version, images}
}

// humanSize prints bytes the way crictl does (kB, MB, GB).
func humanSize(n uint64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	f, suffix := float64(n), []string{"kB", "MB", "GB", "TB"}
	i := -1
	for f >= unit && i < len(suffix)-1 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.3g%s", f, suffix[i])
}
