package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// completionCommand prints a shell completion script.
func completionCommand(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script",
		Long: `Print the completion script for a shell. Completions include the IDs and
names of the runtime's pods, containers and images.`,
		Example: `  # bash, for this shell:
  source <(berth completion bash)
  # bash, for every shell:
  berth completion bash > /etc/bash_completion.d/berth
  # zsh:
  berth completion zsh > "${fpath[1]}/_berth"`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"bash", "zsh", "fish"},
		RunE: func(cmd *cobra.Command, args []string) error {
			w := cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(w, true)
			case "zsh":
				return root.GenZshCompletion(w)
			case "fish":
				return root.GenFishCompletion(w, true)
			}
			return fmt.Errorf("unsupported shell %q: want bash, zsh or fish", args[0])
		},
	}
}

// completionTimeout bounds the CRI calls made while completing.
const completionTimeout = 3 * time.Second

// completeFrom builds a completion function listing "ID\tdescription"
// pairs from the runtime; it completes nothing when the runtime is down.
func completeFrom(g *globals, list func(c *client) []string) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		c, err := g.connect()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		defer c.Close()
		c.timeout = completionTimeout
		return list(c), cobra.ShellCompDirectiveNoFileComp
	}
}

func completeContainers(g *globals) cobra.CompletionFunc {
	return completeFrom(g, func(c *client) []string {
		resp, err := call(c, "list containers", c.listContainersRPC, &runtimeapi.ListContainersRequest{})
		if err != nil {
			return nil
		}
		var out []string
		for _, ctr := range resp.Containers {
			out = append(out, shortID(ctr.Id, false)+"\t"+ctr.GetMetadata().GetName()+" ("+containerState(ctr.State)+")")
		}
		return out
	})
}

func completePods(g *globals) cobra.CompletionFunc {
	return completeFrom(g, func(c *client) []string {
		resp, err := call(c, "list pod sandboxes", c.listPodSandboxRPC, &runtimeapi.ListPodSandboxRequest{})
		if err != nil {
			return nil
		}
		var out []string
		for _, p := range resp.Items {
			md := p.GetMetadata()
			out = append(out, shortID(p.Id, false)+"\t"+md.GetNamespace()+"/"+md.GetName())
		}
		return out
	})
}

func completeImages(g *globals) cobra.CompletionFunc {
	return completeFrom(g, func(c *client) []string {
		resp, err := call(c, "list images", c.listImagesRPC, &runtimeapi.ListImagesRequest{})
		if err != nil {
			return nil
		}
		var out []string
		for _, img := range resp.Images {
			out = append(out, img.RepoTags...)
		}
		return out
	})
}
