package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// podCommands are the pod sandbox commands.
func podCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{podsCommand(g), inspectpCommand(g), runpCommand(g), stoppCommand(g), rmpCommand(g)}
}

// podListOptions select and format pods.
type podListOptions struct {
	id, name, namespace, state string
	labels                     []string
	quiet, noTrunc, latest     bool
	verbose                    bool
	last                       int
	output                     outputFormat
}

func podsCommand(g *globals) *cobra.Command {
	o := &podListOptions{}
	cmd := &cobra.Command{
		Use:     "pods",
		Aliases: []string{"sandboxes"},
		Short:   "List pod sandboxes",
		Example: `  berth pods
  berth pods --namespace kube-system --state ready
  berth pods --label app=web -q
  berth pods -v
  berth pods -o yaml
  berth pods -o go-template --template '{{range .items}}{{.metadata.namespace}}/{{.metadata.name}}{{"\n"}}{{end}}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withClient(func(c *client) error {
				pods, err := c.listPods(o)
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				return printList(w, o.quiet, o.output, pods, &runtimeapi.ListPodSandboxResponse{Items: pods}, func() error {
					if o.verbose {
						return printPodsVerbose(w, pods, time.Now())
					}
					return printPodTable(w, pods, o.noTrunc, time.Now())
				})
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.id, "id", "", "only the pod with this ID (or ID prefix)")
	f.StringVar(&o.name, "name", "", "only pods whose name matches this regular expression")
	f.StringVar(&o.namespace, "namespace", "", "only pods whose namespace matches this regular expression")
	f.StringVarP(&o.state, "state", "s", "", "only pods in this state: ready or notready")
	f.StringSliceVar(&o.labels, "label", nil, "only pods with this label, key=value (repeatable)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "print pod IDs only")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "print every field of each pod instead of the table")
	f.BoolVar(&o.noTrunc, "no-trunc", false, "show full IDs")
	f.BoolVarP(&o.latest, "latest", "l", false, "only the most recently created pod")
	f.IntVarP(&o.last, "last", "n", 0, "only the n most recently created pods")
	addOutputFlag(cmd, &o.output, formatTable, formatJSON, formatYAML)
	return cmd
}

// listPods lists the pods the options select, newest first.
func (c *client) listPods(o *podListOptions) ([]*runtimeapi.PodSandbox, error) {
	filter := &runtimeapi.PodSandboxFilter{}
	var err error
	if filter.LabelSelector, err = parseLabels(o.labels); err != nil {
		return nil, err
	}
	switch strings.ToLower(o.state) {
	case "":
	case "ready":
		filter.State = &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}
	case "notready":
		filter.State = &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}
	default:
		return nil, fmt.Errorf("--state %q: want ready or notready", o.state)
	}
	nameRE, err := optionalRegexp("--name", o.name)
	if err != nil {
		return nil, err
	}
	nsRE, err := optionalRegexp("--namespace", o.namespace)
	if err != nil {
		return nil, err
	}
	resp, err := call(c, "list pod sandboxes", c.listPodSandboxRPC, &runtimeapi.ListPodSandboxRequest{Filter: filter})
	if err != nil {
		return nil, err
	}
	var pods []*runtimeapi.PodSandbox
	for _, p := range resp.Items {
		md := p.GetMetadata()
		if !strings.HasPrefix(p.Id, o.id) || !nameRE.MatchString(md.GetName()) || !nsRE.MatchString(md.GetNamespace()) {
			continue
		}
		pods = append(pods, p)
	}
	slices.SortStableFunc(pods, func(a, b *runtimeapi.PodSandbox) int { return cmp.Compare(b.CreatedAt, a.CreatedAt) })
	return limitLatest(pods, o.latest, o.last), nil
}

// limitLatest keeps the first (newest) item, or the first n.
func limitLatest[T any](items []T, latest bool, last int) []T {
	if latest && last < 1 {
		last = 1
	}
	if last > 0 && len(items) > last {
		return items[:last]
	}
	return items
}

// optionalRegexp compiles a filter pattern; the empty one matches all.
func optionalRegexp(flag, pattern string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	return re, nil
}

// printPodTable prints pods in crictl's columns.
func printPodTable(out io.Writer, pods []*runtimeapi.PodSandbox, noTrunc bool, now time.Time) error {
	w := newTable(out)
	fmt.Fprintln(w, "POD ID\tCREATED\tSTATE\tNAME\tNAMESPACE\tATTEMPT\tRUNTIME")
	for _, p := range pods {
		md := p.GetMetadata()
		handler := p.RuntimeHandler
		if handler == "" {
			handler = "(default)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", shortID(p.Id, noTrunc), ago(p.CreatedAt, now), podState(p.State),
			md.GetName(), md.GetNamespace(), md.GetAttempt(), handler)
	}
	return w.Flush()
}

// printPodsVerbose prints each pod's fields, as crictl pods -v does.
func printPodsVerbose(w io.Writer, pods []*runtimeapi.PodSandbox, now time.Time) error {
	for _, p := range pods {
		md := p.GetMetadata()
		fmt.Fprintf(w, "ID: %s\nName: %s\nUID: %s\nNamespace: %s\nAttempt: %d\nStatus: %s\nCreated: %s\n",
			p.Id, md.GetName(), md.GetUid(), md.GetNamespace(), md.GetAttempt(), podState(p.State), ago(p.CreatedAt, now))
		printMap(w, "Labels", p.Labels)
		printMap(w, "Annotations", p.Annotations)
		handler := p.RuntimeHandler
		if handler == "" {
			handler = "(default)"
		}
		if _, err := fmt.Fprintf(w, "Runtime: %s\n\n", handler); err != nil {
			return err
		}
	}
	return nil
}

func inspectpCommand(g *globals) *cobra.Command {
	var out outputFormat
	cmd := &cobra.Command{
		Use:   "inspectp POD [POD...]",
		Short: "Show the status of one or more pod sandboxes",
		Long:  "Show a pod's CRI status and the verbose information the runtime reports. POD is an ID, a unique ID prefix or a pod name.",
		Example: `  berth inspectp 3f2a
  berth inspectp -o yaml nginx-7d9f
  berth inspectp -o go-template --template '{{.status.network.ip}}' nginx-7d9f`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(func(c *client) error {
				return printStatuses(cmd.OutOrStdout(), out, args, func(ref string) (statusDoc, error) {
					st, err := c.podStatus(ref)
					if err != nil {
						return nil, err
					}
					obj, err := podStatusObject(st.GetStatus())
					return newStatusDoc(obj, st.GetInfo()), err
				})
			})
		},
		ValidArgsFunction: completePods(g),
	}
	addOutputFlag(cmd, &out, formatJSON, formatYAML)
	return cmd
}

// podStatus resolves a reference and asks for its verbose status.
func (c *client) podStatus(ref string) (*runtimeapi.PodSandboxStatusResponse, error) {
	p, err := c.resolvePod(ref)
	if err != nil {
		return nil, err
	}
	return call(c, "pod status of "+ref, c.runtime.PodSandboxStatus, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.Id, Verbose: true})
}

func runpCommand(g *globals) *cobra.Command {
	var handler string
	cmd := &cobra.Command{
		Use:   "runp POD-CONFIG",
		Short: "Run a new pod sandbox from a config file",
		Long: `Run a pod sandbox from a CRI PodSandboxConfig in JSON or YAML ("-" reads
standard input) and print its ID.`,
		Example: `  cat > pod.yaml <<EOF
  metadata: {name: web, namespace: default, uid: web-1, attempt: 0}
  log_directory: /var/log/pods/web
  linux: {}
  EOF
  berth runp pod.yaml
  berth runp --runtime runc pod.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadPodConfig(args[0])
			if err != nil {
				return err
			}
			return g.withClient(func(c *client) error {
				id, err := c.runPod(cfg, handler)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), id)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&handler, "runtime", "", "runtime handler (empty: the runtime's default)")
	return cmd
}

func (c *client) runPod(cfg *runtimeapi.PodSandboxConfig, handler string) (string, error) {
	resp, err := call(c, "run pod sandbox", c.runtime.RunPodSandbox, &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
	return resp.GetPodSandboxId(), err
}

func stoppCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "stopp POD [POD...]",
		Short: "Stop one or more pod sandboxes",
		Long:  "Stop pod sandboxes and every container in them. POD is an ID, a unique ID prefix or a pod name.",
		Example: `  berth stopp 3f2a
  berth stopp $(berth pods -q --namespace test)`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(func(c *client) error {
				return eachID(args, c.resolvePod, func(id string) error {
					if _, err := call(c, "stop pod sandbox "+id, c.runtime.StopPodSandbox, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "Stopped sandbox %s\n", id)
					return nil
				})
			})
		},
		ValidArgsFunction: completePods(g),
	}
}

func rmpCommand(g *globals) *cobra.Command {
	var force, all bool
	cmd := &cobra.Command{
		Use:   "rmp [POD...]",
		Short: "Remove one or more pod sandboxes",
		Long: `Remove pod sandboxes with their containers. A pod that is still ready is
refused unless --force, which stops it first.`,
		Example: `  berth rmp 3f2a
  berth rmp -f web
  berth rmp -a -f`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && !all {
				return errors.New("give a POD or --all")
			}
			return g.withClient(func(c *client) error {
				if all {
					pods, err := c.listPods(&podListOptions{})
					if err != nil {
						return err
					}
					args = append(args, ids(pods)...)
				}
				return eachID(args, c.resolvePod, func(id string) error {
					// One deadline for the status, stop and remove of a pod.
					ctx, cancel := c.ctx()
					defer cancel()
					st, err := c.runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
					if err != nil {
						return fmt.Errorf("pod status of %s: %w", id, err)
					}
					if st.GetStatus().GetState() == runtimeapi.PodSandboxState_SANDBOX_READY {
						if !force {
							return fmt.Errorf("pod sandbox %s is ready: stop it first or use --force", id)
						}
						if _, err := c.runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
							return fmt.Errorf("stop pod sandbox %s: %w", id, err)
						}
					}
					if _, err := c.runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
						return fmt.Errorf("remove pod sandbox %s: %w", id, err)
					}
					fmt.Fprintf(cmd.OutOrStdout(), "Removed sandbox %s\n", id)
					return nil
				})
			})
		},
		ValidArgsFunction: completePods(g),
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "stop ready pods before removing them")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove every pod sandbox")
	return cmd
}
