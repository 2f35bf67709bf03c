package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/image"
)

// imageCommands returns "berth image" with the offline subcommands, which
// open berth's containers/storage directly (as podman does) rather than
// going through berthd: they work on an air-gapped node whether or not
// berthd runs, and containers/storage locks the store across processes.
func imageCommands(g *globals) []*cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Import and export image archives (offline, without berthd)",
		Long: `Import and export image archives straight to and from berth's storage.

These commands do not talk to berthd: they read berthd's config file
(--config, and its drop-in directory <config>.d) to find the storage and the
signature policy, and may run while berthd runs.`,
	}
	cmd.AddCommand(importCommand(g), exportCommand(g))
	return []*cobra.Command{cmd}
}

func importCommand(g *globals) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Load an image from a docker-archive, an oci-archive or an OCI layout directory",
		Long: `Load the image in FILE into berth's storage.

FILE is a docker-archive tarball ("docker save"), an oci-archive tarball, or
an OCI image layout directory; compressed tarballs are accepted. The image is
named NAME, or by the name the archive records when it records exactly one.
A short NAME such as "app:1" is stored as "localhost/app:1" and found again
by its short name. The signature policy applies as for pulls.`,
		Example: `  berth image import busybox.tar --name busybox:demo
  berth image import ./oci-layout-dir --name registry.example.com/app:1.0`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, ctx, done, err := g.openImages(cmd)
			if err != nil {
				return err
			}
			defer done()
			info, err := svc.Import(ctx, args[0], name)
			if err != nil {
				return err
			}
			tag := info.ID
			if len(info.RepoTags) > 0 {
				tag = info.RepoTags[0]
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Imported %s (ID %s)\n", tag, info.ID)
			return nil
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "name (and tag) to give the image")
	return cmd
}

func exportCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "export IMAGE FILE",
		Short: "Save an image to a docker-archive tarball",
		Long: `Save the image IMAGE (a name, an ID or an ID prefix) from berth's storage to
FILE as a docker-archive tarball, which "berth image import", "docker load"
and "podman load" read. FILE must not exist.`,
		Example: `  berth image export busybox:demo busybox.tar`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, ctx, done, err := g.openImages(cmd)
			if err != nil {
				return err
			}
			defer done()
			if err := svc.Export(ctx, args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Exported %s to %s\n", args[0], args[1])
			return nil
		},
	}
}

// openImages builds an image service on berthd's config. The returned
// context ends on SIGINT or SIGTERM, so an interrupted import cleans up
// after itself; done closes storage.
func (g *globals) openImages(cmd *cobra.Command) (*image.Service, context.Context, func(), error) {
	loader := config.Loader{
		File:         g.config,
		DropInDir:    g.config + ".d",
		FileRequired: cmd.Flags().Changed("config"),
	}
	cfg, err := loader.Load()
	if err != nil {
		return nil, nil, nil, err
	}
	level := slog.LevelWarn
	if g.debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	// containers/storage and containers/image log through logrus; at its
	// default level they chatter about driver choices on every run.
	if !g.debug {
		logrus.SetLevel(logrus.WarnLevel)
	}
	svc := image.New(func() *config.Config { return cfg }, log, nil)
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	done := func() {
		stop()
		if err := svc.Close(); err != nil {
			log.Error("close storage", "error", err)
		}
	}
	return svc, ctx, done, nil
}
