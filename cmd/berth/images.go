package main

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// imagesCommands are the CRI image commands.
func imagesCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{listImagesCommand(g), inspectiCommand(g), imagefsinfoCommand(g), pullCommand(g), rmiCommand(g)}
}

func inspectiCommand(g *globals) *cobra.Command {
	var out outputFormat
	cmd := &cobra.Command{
		Use:   "inspecti IMAGE [IMAGE...]",
		Short: "Show the status of one or more images",
		Long:  "Show an image's CRI status and the verbose information the runtime reports. IMAGE is a name, an ID or a unique ID prefix.",
		Example: `  berth inspecti busybox
  berth inspecti -o yaml 3f57d9401f8d
  berth inspecti -o go-template --template '{{.status.size}}' busybox`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(func(c *client) error {
				return printStatuses(cmd.OutOrStdout(), out, args, func(ref string) (statusDoc, error) {
					img, err := c.resolveImage(ref)
					if err != nil {
						return nil, err
					}
					st, err := call(c, "image status of "+ref, c.images.ImageStatus,
						&runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: img.Id}, Verbose: true})
					if err != nil {
						return nil, err
					}
					if st.Image == nil {
						return nil, &notFoundError{kind: "image", ref: ref}
					}
					obj, err := protoObject(st.Image)
					return newStatusDoc(obj, st.GetInfo()), err
				})
			})
		},
		ValidArgsFunction: completeImages(g),
	}
	addOutputFlag(cmd, &out, formatJSON, formatYAML)
	return cmd
}

func imagefsinfoCommand(g *globals) *cobra.Command {
	var out outputFormat
	cmd := &cobra.Command{
		Use:     "imagefsinfo",
		Short:   "Show the usage of the image and container filesystems",
		Example: "  berth imagefsinfo\n  berth imagefsinfo -o table",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withClient(func(c *client) error {
				resp, err := call(c, "get image filesystem info", c.images.ImageFsInfo, &runtimeapi.ImageFsInfoRequest{})
				if err != nil {
					return err
				}
				if !out.table() {
					return printProto(cmd.OutOrStdout(), out, resp)
				}
				w := newTable(cmd.OutOrStdout())
				fmt.Fprintln(w, "FILESYSTEM\tMOUNTPOINT\tUSED\tINODES")
				row := func(kind string, fs *runtimeapi.FilesystemUsage) {
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\n", kind, fs.GetFsId().GetMountpoint(), humanSize(fs.GetUsedBytes().GetValue()), fs.GetInodesUsed().GetValue())
				}
				for _, fs := range resp.ImageFilesystems {
					row("image", fs)
				}
				for _, fs := range resp.ContainerFilesystems {
					row("container", fs)
				}
				return w.Flush()
			})
		},
	}
	addOutputFlag(cmd, &out, formatJSON, formatYAML, formatTable)
	return cmd
}

func rmiCommand(g *globals) *cobra.Command {
	var all, prune bool
	cmd := &cobra.Command{
		Use:   "rmi [IMAGE...]",
		Short: "Remove images",
		Long: `Remove images by name, ID or unique ID prefix. A name (REPO:TAG) of an
image that has other names only untags it; an ID or ID prefix, or an image's
last name, removes the image. --all removes every image and --prune every
image no container uses; pinned images are kept by both.`,
		Example: `  berth rmi busybox:latest
  berth rmi 3f57d94
  berth rmi --prune`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && !all && !prune {
				return errors.New("give an IMAGE, --all or --prune")
			}
			return g.withClient(func(c *client) error {
				var targets []removal
				for _, ref := range args {
					r, err := c.removalOf(ref)
					if err != nil {
						return err
					}
					targets = append(targets, r)
				}
				if all || prune {
					more, err := c.removableImages(prune)
					if err != nil {
						return err
					}
					for _, img := range more {
						targets = append(targets, removal{image: img, ref: img.Id})
					}
				}
				return c.removeImages(cmd.OutOrStdout(), targets)
			})
		},
		ValidArgsFunction: completeImages(g),
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove all images")
	cmd.Flags().BoolVarP(&prune, "prune", "q", false, "remove all images no container uses")
	return cmd
}

// removal is one RemoveImage to send: ref is what the runtime is asked
// to remove (the name the operator typed, or an image ID), image the
// image it named beforehand.
type removal struct {
	image *runtimeapi.Image
	ref   string
}

// removalOf finds the image ref names. The runtime gets ref as typed when
// it resolved ref itself, so that a name is only untagged where the image
// has other names; a reference only berth resolved (an ID prefix the
// runtime does not take) is sent as the image's ID.
func (c *client) removalOf(ref string) (removal, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	st, err := c.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err == nil && st.Image != nil {
		return removal{image: st.Image, ref: ref}, nil
	}
	img, err := c.resolveImage(ref)
	if err != nil {
		return removal{}, err
	}
	if slices.Contains(img.RepoTags, ref) {
		return removal{image: img, ref: ref}, nil
	}
	return removal{image: img, ref: img.Id}, nil
}

// removeImages sends each removal once, going on past failures and
// returning them all. It prints what went: "Untagged: NAME" for each name
// an image lost while it stays, "Deleted: NAME" for each name of an image
// that is gone.
func (c *client) removeImages(w io.Writer, targets []removal) error {
	var errs []error
	done := map[string]bool{}
	for _, t := range targets {
		if done[t.image.Id] || done[t.ref] {
			continue
		}
		done[t.ref] = true
		// An earlier removal may have changed the image's names.
		before, err := c.imageByID(t.image.Id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if before == nil {
			continue
		}
		if _, err := call(c, "remove image "+t.ref, c.images.RemoveImage,
			&runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: t.ref}}); err != nil {
			errs = append(errs, err)
			continue
		}
		after, err := c.imageByID(t.image.Id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if after != nil {
			for _, name := range before.RepoTags {
				if !slices.Contains(after.RepoTags, name) {
					fmt.Fprintf(w, "Untagged: %s\n", name)
				}
			}
			continue
		}
		done[t.image.Id] = true
		for _, name := range slices.Concat(before.RepoTags, before.RepoDigests) {
			fmt.Fprintf(w, "Deleted: %s\n", name)
		}
		if len(before.RepoTags)+len(before.RepoDigests) == 0 {
			fmt.Fprintf(w, "Deleted: %s\n", before.Id)
		}
	}
	return errors.Join(errs...)
}

// imageByID is the image with this ID, nil when there is none.
func (c *client) imageByID(id string) (*runtimeapi.Image, error) {
	st, err := call(c, "image status of "+id, c.images.ImageStatus,
		&runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: id}})
	return st.GetImage(), err
}

// removableImages lists the unpinned images, only those no container
// (running or not) uses when unused is set.
func (c *client) removableImages(unused bool) ([]*runtimeapi.Image, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	list, err := c.listImagesRPC(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	used := map[string]bool{}
	if unused {
		ctrs, err := c.listContainersRPC(ctx, &runtimeapi.ListContainersRequest{})
		if err != nil {
			return nil, fmt.Errorf("list containers: %w", err)
		}
		for _, ctr := range ctrs.Containers {
			used[ctr.ImageRef] = true
			used[ctr.GetImage().GetImage()] = true
			used[ctr.ImageId] = true
		}
	}
	var out []*runtimeapi.Image
	for _, img := range list.Images {
		if img.Pinned || used[img.Id] || slices.ContainsFunc(slices.Concat(img.RepoTags, img.RepoDigests), func(n string) bool { return used[n] }) {
			continue
		}
		out = append(out, img)
	}
	return out, nil
}
