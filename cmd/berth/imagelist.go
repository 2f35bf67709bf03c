package main

import (
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// imageListOptions select and format images.
type imageListOptions struct {
	quiet, digests, noTrunc, pinned, verbose bool
	filters                                  []string
	output                                   outputFormat
}

func listImagesCommand(g *globals) *cobra.Command {
	o := &imageListOptions{}
	cmd := &cobra.Command{
		Use:   "images [REPOSITORY[:TAG]]",
		Short: "List images",
		Long: `List images, one row per tag. REPOSITORY without a tag lists every tag of
that repository ("busybox" matches docker.io/library/busybox); with a tag,
a digest or an image ID it lists that image.`,
		Example: `  berth images
  berth images busybox
  berth images --digests busybox:1.36
  berth images --filter dangling=true -q
  berth images --filter reference=registry.k8s.io/
  berth images -o go-template --template '{{range .images}}{{.id}} {{.size}}{{"\n"}}{{end}}'`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			return g.withClient(func(c *client) error {
				images, repo, err := c.listImages(name, o.filters)
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				return printList(w, o.quiet, o.output, images, &runtimeapi.ListImagesResponse{Images: images}, func() error {
					if o.verbose {
						return printImagesVerbose(w, images)
					}
					return printImageTable(w, images, repo, o)
				})
			})
		},
		ValidArgsFunction: completeImages(g),
	}
	f := cmd.Flags()
	f.BoolVarP(&o.quiet, "quiet", "q", false, "print image IDs only")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "print every field of each image instead of the table")
	f.StringSliceVarP(&o.filters, "filter", "f", nil, "only images matching a condition (repeatable): dangling=true|false, reference=REGEXP")
	f.BoolVar(&o.digests, "digests", false, "show each tag's repo digest")
	f.BoolVar(&o.noTrunc, "no-trunc", false, "show full IDs and digests")
	f.BoolVar(&o.pinned, "pinned", false, "show whether each image is pinned")
	addOutputFlag(cmd, &o.output, formatTable, formatJSON, formatYAML)
	return cmd
}

// listImages lists the images a name and the filters select, sorted by
// their first tag. When name is a bare repository it also returns that
// repository, whose rows alone the table shows.
func (c *client) listImages(name string, filters []string) ([]*runtimeapi.Image, string, error) {
	match, err := imageFilters(filters)
	if err != nil {
		return nil, "", err
	}
	var images []*runtimeapi.Image
	repo := ""
	if name != "" && isBareRepo(name) {
		all, err := call(c, "list images", c.listImagesRPC, &runtimeapi.ListImagesRequest{})
		if err != nil {
			return nil, "", err
		}
		if images = withRepo(all.Images, name); len(images) > 0 {
			repo = name
		}
	}
	if repo == "" {
		// Everything, or what the runtime resolves a tag, digest or ID to.
		req := &runtimeapi.ListImagesRequest{}
		if name != "" {
			req.Filter = &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: name}}
		}
		resp, err := call(c, "list images", c.listImagesRPC, req)
		if err != nil {
			return nil, "", err
		}
		images = resp.Images
	}
	images = slices.DeleteFunc(slices.Clone(images), func(img *runtimeapi.Image) bool { return !match(img) })
	slices.SortStableFunc(images, func(a, b *runtimeapi.Image) int {
		return strings.Compare(firstOr(a.RepoTags, a.Id), firstOr(b.RepoTags, b.Id))
	})
	return images, repo, nil
}

// isBareRepo tells a repository name from a name with a tag or digest.
func isBareRepo(name string) bool {
	if strings.Contains(name, "@") || hexID.MatchString(name) {
		return false
	}
	_, tag := splitTag(name)
	return tag == "<none>"
}

// repoMatches tells whether a fully qualified repository is the one an
// operator named, in full or by its trailing path ("busybox",
// "library/busybox" and "docker.io/library/busybox" all name
// docker.io/library/busybox).
func repoMatches(repo, name string) bool {
	return repo == name || strings.HasSuffix(repo, "/"+name)
}

// withRepo keeps the images with a tag or digest in the named repository.
func withRepo(images []*runtimeapi.Image, name string) []*runtimeapi.Image {
	var out []*runtimeapi.Image
	for _, img := range images {
		if slices.ContainsFunc(imageRows(img), func(r imageRow) bool { return repoMatches(r.repo, name) }) {
			out = append(out, img)
		}
	}
	return out
}

// imageFilters compiles --filter conditions into one predicate.
func imageFilters(filters []string) (func(*runtimeapi.Image) bool, error) {
	var preds []func(*runtimeapi.Image) bool
	for _, f := range filters {
		key, value, _ := strings.Cut(f, "=")
		switch key {
		case "dangling":
			if value != "true" && value != "false" {
				return nil, fmt.Errorf("--filter %q: want dangling=true or dangling=false", f)
			}
			want := value == "true"
			preds = append(preds, func(img *runtimeapi.Image) bool { return (len(img.RepoTags) == 0) == want })
		case "reference":
			re, err := regexp.Compile(value)
			if err != nil {
				return nil, fmt.Errorf("--filter %q: %w", f, err)
			}
			preds = append(preds, func(img *runtimeapi.Image) bool {
				return slices.ContainsFunc(imageRows(img), func(r imageRow) bool {
					return re.MatchString(r.repo) || re.MatchString(r.repo+":"+r.tag)
				})
			})
		default:
			return nil, fmt.Errorf("--filter %q: want dangling=true|false or reference=REGEXP", f)
		}
	}
	return func(img *runtimeapi.Image) bool {
		for _, p := range preds {
			if !p(img) {
				return false
			}
		}
		return true
	}, nil
}

func firstOr(s []string, def string) string {
	if len(s) > 0 {
		return s[0]
	}
	return def
}

// printImageTable prints one row per repository tag, as crictl does;
// with repo set only that repository's rows.
func printImageTable(out io.Writer, images []*runtimeapi.Image, repo string, o *imageListOptions) error {
	w := newTable(out)
	cols := []string{"IMAGE", "TAG"}
	if o.digests {
		cols = append(cols, "DIGEST")
	}
	cols = append(cols, "IMAGE ID", "SIZE")
	if o.pinned {
		cols = append(cols, "PINNED")
	}
	fmt.Fprintln(w, strings.Join(cols, "\t"))
	for _, img := range images {
		for _, row := range imageRows(img) {
			if repo != "" && !repoMatches(row.repo, repo) {
				continue
			}
			fields := []string{row.repo, row.tag}
			if o.digests {
				digest := row.digest // whole with --no-trunc, "sha256:" and all, as crictl
				if !o.noTrunc {
					digest = shortID(digest, false)
				}
				fields = append(fields, digest)
			}
			fields = append(fields, shortID(img.Id, o.noTrunc), humanSize(img.Size))
			if o.pinned {
				fields = append(fields, fmt.Sprint(img.Pinned))
			}
			fmt.Fprintln(w, strings.Join(fields, "\t"))
		}
	}
	return w.Flush()
}

// printImagesVerbose prints each image's fields, as crictl images -v does.
func printImagesVerbose(w io.Writer, images []*runtimeapi.Image) error {
	for _, img := range images {
		fmt.Fprintf(w, "ID: %s\n", img.Id)
		for _, t := range img.RepoTags {
			fmt.Fprintf(w, "RepoTags: %s\n", t)
		}
		for _, d := range img.RepoDigests {
			fmt.Fprintf(w, "RepoDigests: %s\n", d)
		}
		if img.Size != 0 {
			fmt.Fprintf(w, "Size: %d\n", img.Size)
		}
		if img.Uid != nil {
			fmt.Fprintf(w, "Uid: %d\n", img.Uid.Value)
		}
		if img.Username != "" {
			fmt.Fprintf(w, "Username: %s\n", img.Username)
		}
		if img.Pinned {
			fmt.Fprintln(w, "Pinned: true")
		}
		if _, err := fmt.Fprintln(w); err != nil {
			return err
		}
	}
	return nil
}

type imageRow struct{ repo, tag, digest string }

// imageRows splits an image's tags and digests by repository. A row's
// digest is the first of its repository's repo digests: the one crictl
// shows, which the runtime lists first (the digest the tag was pulled by).
func imageRows(img *runtimeapi.Image) []imageRow {
	digestOf := map[string]string{}
	for _, d := range img.RepoDigests {
		if repo, dig, ok := strings.Cut(d, "@"); ok && digestOf[repo] == "" {
			digestOf[repo] = dig
		}
	}
	var rows []imageRow
	seen := map[string]bool{}
	for _, t := range img.RepoTags {
		repo, tag := splitTag(t)
		rows = append(rows, imageRow{repo, tag, digestOf[repo]})
		seen[repo] = true
	}
	for _, d := range img.RepoDigests {
		if repo, dig, ok := strings.Cut(d, "@"); ok && !seen[repo] {
			rows = append(rows, imageRow{repo, "<none>", dig})
			seen[repo] = true
		}
	}
	if len(rows) == 0 {
		rows = append(rows, imageRow{"<none>", "<none>", ""})
	}
	return rows
}

// splitTag splits "host:port/repo:tag" at the tag's colon.
func splitTag(ref string) (repo, tag string) {
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[:i], ref[i+1:]
	}
	return ref, "<none>"
}
