package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/transports/alltransports"
	"go.podman.io/image/v5/types"
)

// addImageCopy adds "image copy" under the image command that image.go
// makes, or makes that parent itself when there is none.
func addImageCopy(root *cobra.Command, g *globals) {
	var parent *cobra.Command
	for _, c := range root.Commands() {
		if c.Name() == "image" {
			parent = c
		}
	}
	if parent == nil {
		parent = &cobra.Command{
			Use:     "image",
			Short:   "Move images without the runtime: copy between transports",
			Example: "  berth image copy docker://registry.example.com/app:1.0 oci:/srv/images/app:1.0",
			Args:    cobra.NoArgs,
			GroupID: "images",
		}
		root.AddCommand(parent)
	}
	parent.AddCommand(imageCopyCommand(g))
	if parent.Example == "" {
		// One example per subcommand: the first line of each one's own.
		var lines []string
		for _, sub := range parent.Commands() {
			for _, l := range strings.Split(sub.Example, "\n") {
				if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
					lines = append(lines, l)
					break
				}
			}
		}
		parent.Example = strings.Join(lines, "\n")
	}
}

// copyOptions are image copy's flags.
type copyOptions struct {
	srcCreds, destCreds        string
	srcTLSVerify, destTLS      bool
	registriesConf, policy     string
	insecurePolicy, all, quiet bool
}

func imageCopyCommand(_ *globals) *cobra.Command {
	o := &copyOptions{}
	cmd := &cobra.Command{
		Use:   "copy SOURCE DESTINATION",
		Short: "Copy an image between transports (skopeo-style), for air-gapped nodes",
		Long: `Copy an image from SOURCE to DESTINATION, each a containers/image
reference with its transport: docker://REGISTRY/REPO:TAG, oci:DIR[:REF],
oci-archive:FILE[:REF], docker-archive:FILE[:REF], dir:DIR, or
containers-storage:NAME (the store storage.conf names). It runs in berth itself,
without berthd, and checks the signature policy (--policy, else
/etc/containers/policy.json) on the source.`,
		Example: `  # fetch on a connected machine, carry the archive over:
  berth image copy docker://registry.example.com/app:1.0 oci-archive:/media/app.tar:app:1.0
  # on the node, push it into the local mirror:
  berth image copy --dest-tls-verify=false oci-archive:/media/app.tar:app:1.0 docker://127.0.0.1:5000/app:1.0
  # every platform of a multi-arch image, into an OCI layout:
  berth image copy --all docker://registry.example.com/app:1.0 oci:/srv/images/app:1.0`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var report io.Writer = cmd.ErrOrStderr()
			if o.quiet {
				report = io.Discard
			}
			if err := copyImage(cmd.Context(), o, args[0], args[1], report); err != nil {
				return err
			}
			if !o.quiet {
				fmt.Fprintf(cmd.OutOrStdout(), "Copied %s to %s\n", args[0], args[1])
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.srcCreds, "src-creds", "", "source registry credentials, USERNAME[:PASSWORD]")
	f.StringVar(&o.destCreds, "dest-creds", "", "destination registry credentials, USERNAME[:PASSWORD]")
	f.BoolVar(&o.srcTLSVerify, "src-tls-verify", true, "require HTTPS and verify certificates on the source registry")
	f.BoolVar(&o.destTLS, "dest-tls-verify", true, "require HTTPS and verify certificates on the destination registry")
	f.StringVar(&o.registriesConf, "registries-conf", "", "registries.conf to use (default: the system's)")
	f.StringVar(&o.policy, "policy", "", "signature policy file (default: /etc/containers/policy.json)")
	f.BoolVar(&o.insecurePolicy, "insecure-policy", false, "accept any image, without a signature policy")
	f.BoolVarP(&o.all, "all", "a", false, "copy every image of a multi-platform list, not only this platform's")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "print nothing but errors")
	return cmd
}

// systemContext builds one side's containers/image context.
func (o *copyOptions) systemContext(creds string, tlsVerify bool) (*types.SystemContext, error) {
	sys := &types.SystemContext{SystemRegistriesConfPath: o.registriesConf}
	if !tlsVerify {
		sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
		sys.OCIInsecureSkipTLSVerify = true
	}
	if creds != "" {
		user, pass, _ := strings.Cut(creds, ":")
		if user == "" {
			return nil, fmt.Errorf("credentials %q: want USERNAME[:PASSWORD]", creds)
		}
		sys.DockerAuthConfig = &types.DockerAuthConfig{Username: user, Password: pass}
	}
	return sys, nil
}

// copyImage copies src to dest with containers/image.
func copyImage(ctx context.Context, o *copyOptions, src, dest string, report io.Writer) error {
	srcRef, err := alltransports.ParseImageName(src)
	if err != nil {
		return fmt.Errorf("source %q: %w", src, err)
	}
	destRef, err := alltransports.ParseImageName(dest)
	if err != nil {
		return fmt.Errorf("destination %q: %w", dest, err)
	}
	srcCtx, err := o.systemContext(o.srcCreds, o.srcTLSVerify)
	if err != nil {
		return fmt.Errorf("--src-creds: %w", err)
	}
	destCtx, err := o.systemContext(o.destCreds, o.destTLS)
	if err != nil {
		return fmt.Errorf("--dest-creds: %w", err)
	}
	var policy *signature.Policy
	switch {
	case o.insecurePolicy:
		policy = &signature.Policy{Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}}
	case o.policy != "":
		policy, err = signature.NewPolicyFromFile(o.policy)
	default:
		policy, err = signature.DefaultPolicy(srcCtx)
	}
	if err != nil {
		return fmt.Errorf("signature policy (use --policy FILE, or --insecure-policy): %w", err)
	}
	pc, err := signature.NewPolicyContext(policy)
	if err != nil {
		return fmt.Errorf("signature policy: %w", err)
	}
	defer pc.Destroy()
	opts := &copy.Options{ReportWriter: report, SourceCtx: srcCtx, DestinationCtx: destCtx}
	if o.all {
		opts.ImageListSelection = copy.CopyAllImages
	}
	if _, err := copy.Image(ctx, pc, destRef, srcRef, opts); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dest, err)
	}
	return nil
}
