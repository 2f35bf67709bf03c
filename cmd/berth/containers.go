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
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// containerCommands are the container lifecycle commands.
func containerCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{psCommand(g), inspectCommand(g), createCommand(g), startCommand(g), stopCommand(g),
		rmCommand(g), runCommand(g), updateCommand(g)}
}

// ctrListOptions select and format containers.
type ctrListOptions struct {
	all, quiet, noTrunc, latest bool
	pod, id, name, state, image string
	labels                      []string
	last                        int
	output                      string
}

func psCommand(g *globals) *cobra.Command {
	o := &ctrListOptions{}
	cmd := &cobra.Command{
		Use:   "ps",
		Short: "List containers",
		Long:  "List running containers; -a lists every container, --state those in one state.",
		Example: `  berth ps
  berth ps -a --pod 3f2a
  berth ps --label io.kubernetes.container.name=web -q
  berth ps -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withClient(func(c *client) error {
				ctrs, err := c.listContainers(o)
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				return printList(w, o.quiet, o.output, ctrs, &runtimeapi.ListContainersResponse{Containers: ctrs}, func() error {
					return printContainerTable(w, ctrs, c.podNames(), o.noTrunc, time.Now())
				})
			})
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.all, "all", "a", false, "show every container, not only running ones")
	f.StringVarP(&o.pod, "pod", "p", "", "only containers of this pod (ID, ID prefix or name)")
	f.StringVar(&o.id, "id", "", "only the container with this ID (or ID prefix)")
	f.StringVar(&o.name, "name", "", "only containers whose name matches this regular expression")
	f.StringVarP(&o.state, "state", "s", "", "only containers in this state: created, running, exited or unknown")
	f.StringVar(&o.image, "image", "", "only containers of this image (name or ID prefix)")
	f.StringSliceVar(&o.labels, "label", nil, "only containers with this label, key=value (repeatable)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "print container IDs only")
	f.BoolVar(&o.noTrunc, "no-trunc", false, "show full IDs")
	f.BoolVarP(&o.latest, "latest", "l", false, "only the most recently created container")
	f.IntVarP(&o.last, "last", "n", 0, "only the n most recently created containers")
	addOutputFlag(cmd, &o.output, formatTable, formatJSON, formatYAML)
	_ = cmd.RegisterFlagCompletionFunc("pod", completePods(g))
	return cmd
}

// listContainers lists the containers the options select, newest first.
func (c *client) listContainers(o *ctrListOptions) ([]*runtimeapi.Container, error) {
	filter := &runtimeapi.ContainerFilter{}
	var err error
	if filter.LabelSelector, err = parseLabels(o.labels); err != nil {
		return nil, err
	}
	if o.pod != "" {
		p, err := c.resolvePod(o.pod)
		if err != nil {
			return nil, err
		}
		filter.PodSandboxId = p.Id
	}
	state := strings.ToLower(o.state)
	switch state {
	case "":
		if !o.all {
			filter.State = &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}
		}
	case "created", "running", "exited", "unknown":
		v := runtimeapi.ContainerState_value["CONTAINER_"+strings.ToUpper(state)]
		filter.State = &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState(v)}
	default:
		return nil, fmt.Errorf("--state %q: want created, running, exited or unknown", o.state)
	}
	nameRE, err := optionalRegexp("--name", o.name)
	if err != nil {
		return nil, err
	}
	resp, err := call(c, "list containers", c.runtime.ListContainers, &runtimeapi.ListContainersRequest{Filter: filter})
	if err != nil {
		return nil, err
	}
	var ctrs []*runtimeapi.Container
	for _, ctr := range resp.Containers {
		if !strings.HasPrefix(ctr.Id, o.id) || !nameRE.MatchString(ctr.GetMetadata().GetName()) || !matchImage(ctr, o.image) {
			continue
		}
		ctrs = append(ctrs, ctr)
	}
	slices.SortStableFunc(ctrs, func(a, b *runtimeapi.Container) int { return cmp.Compare(b.CreatedAt, a.CreatedAt) })
	return limitLatest(ctrs, o.latest, o.last), nil
}

// matchImage tells whether a container runs the image a user named.
func matchImage(ctr *runtimeapi.Container, image string) bool {
	if image == "" {
		return true
	}
	bare := strings.TrimPrefix(image, "sha256:")
	for _, s := range []string{ctr.GetImage().GetImage(), ctr.ImageRef, ctr.ImageId} {
		s = strings.TrimPrefix(s, "sha256:")
		if s == "" {
			continue
		}
		if s == image || strings.HasPrefix(s, bare) || strings.TrimPrefix(s, "docker.io/library/") == image ||
			strings.TrimPrefix(s, "docker.io/library/") == image+":latest" {
			return true
		}
	}
	return false
}

// podNames maps pod IDs to names for the ps table; best effort.
func (c *client) podNames() map[string]string {
	names := map[string]string{}
	resp, err := call(c, "list pod sandboxes", c.runtime.ListPodSandbox, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return names
	}
	for _, p := range resp.Items {
		names[p.Id] = p.GetMetadata().GetName()
	}
	return names
}

// printContainerTable prints containers in crictl's columns.
func printContainerTable(out io.Writer, ctrs []*runtimeapi.Container, pods map[string]string, noTrunc bool, now time.Time) error {
	w := newTable(out)
	fmt.Fprintln(w, "CONTAINER\tIMAGE\tCREATED\tSTATE\tNAME\tATTEMPT\tPOD ID\tPOD")
	for _, ctr := range ctrs {
		pod := pods[ctr.PodSandboxId]
		if pod == "" {
			pod = ctr.Labels["io.kubernetes.pod.name"]
		}
		md := ctr.GetMetadata()
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", shortID(ctr.Id, noTrunc), imageColumn(ctr.GetImage().GetImage(), noTrunc),
			ago(ctr.CreatedAt, now), containerState(ctr.State), md.GetName(), md.GetAttempt(), shortID(ctr.PodSandboxId, noTrunc), pod)
	}
	return w.Flush()
}

// hexID matches a bare image ID.
var hexID = regexp.MustCompile(`^(sha256:)?[0-9a-f]{64}$`)

// imageColumn shortens an image that is an ID and keeps a name whole.
func imageColumn(image string, noTrunc bool) string {
	if hexID.MatchString(image) {
		return shortID(image, noTrunc)
	}
	return image
}

func inspectCommand(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "inspect CONTAINER [CONTAINER...]",
		Short: "Show the status of one or more containers",
		Long:  "Show a container's CRI status and the verbose information the runtime reports. CONTAINER is an ID, a unique ID prefix or a name.",
		Example: `  berth inspect 9c1e
  berth inspect -o yaml web`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(func(c *client) error {
				return printStatuses(cmd.OutOrStdout(), out, args, func(ref string) (proto.Message, map[string]string, error) {
					st, err := c.containerStatus(ref, true)
					return st.GetStatus(), st.GetInfo(), err
				})
			})
		},
		ValidArgsFunction: completeContainers(g),
	}
	addOutputFlag(cmd, &out, formatJSON, formatYAML)
	return cmd
}

// containerStatus resolves a reference and asks for its status.
func (c *client) containerStatus(ref string, verbose bool) (*runtimeapi.ContainerStatusResponse, error) {
	ctr, err := c.resolveContainer(ref)
	if err != nil {
		return nil, err
	}
	return call(c, "container status of "+ref, c.runtime.ContainerStatus, &runtimeapi.ContainerStatusRequest{ContainerId: ctr.Id, Verbose: verbose})
}

func startCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "start CONTAINER [CONTAINER...]",
		Short:   "Start one or more created containers",
		Example: "  berth start 9c1e\n  berth start web",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(func(c *client) error {
				return eachID(args, c.resolveContainer, func(id string) error {
					if err := c.start(id); err != nil {
						return err
					}
					fmt.Fprintln(cmd.OutOrStdout(), id)
					return nil
				})
			})
		},
		ValidArgsFunction: completeContainers(g),
	}
}

func (c *client) start(id string) error {
	_, err := call(c, "start container "+id, c.runtime.StartContainer, &runtimeapi.StartContainerRequest{ContainerId: id})
	return err
}

func stopCommand(g *globals) *cobra.Command {
	var timeout string
	cmd := &cobra.Command{
		Use:   "stop CONTAINER [CONTAINER...]",
		Short: "Stop one or more running containers",
		Long: `Stop containers: the stop signal first, then SIGKILL once --timeout
seconds have passed (0 kills at once, as crictl's default does). Here
--timeout is the grace period, as in crictl; the CRI call's own deadline is
the client config's timeout plus the grace period.`,
		Example: "  berth stop 9c1e\n  berth stop -t 30 web",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(func(c *client) error {
				grace, err := graceSeconds("--timeout", timeout)
				if err != nil {
					return err
				}
				return eachID(args, c.resolveContainer, func(id string) error {
					if err := c.stop(id, grace); err != nil {
						return err
					}
					fmt.Fprintln(cmd.OutOrStdout(), id)
					return nil
				})
			})
		},
		ValidArgsFunction: completeContainers(g),
	}
	cmd.Flags().StringVarP(&timeout, "timeout", "t", "0", "grace period before SIGKILL: seconds, or a duration such as 30s")
	return cmd
}

// graceSeconds reads a per-command timeout flag (seconds or a duration)
// as whole seconds, rounded up.
func graceSeconds(flag, v string) (int64, error) {
	d, err := parseTimeout(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s %q: want seconds or a duration such as 30s", flag, v)
	}
	return int64((d + time.Second - 1) / time.Second), nil
}

func (c *client) stop(id string, timeout int64) error {
	d := c.timeout
	if d > 0 {
		d += time.Duration(timeout) * time.Second
	}
	ctx, cancel := withTimeout(d)
	defer cancel()
	if _, err := c.runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: timeout}); err != nil {
		return fmt.Errorf("stop container %s: %w", id, err)
	}
	return nil
}

func rmCommand(g *globals) *cobra.Command {
	var force, all bool
	cmd := &cobra.Command{
		Use:   "rm [CONTAINER...]",
		Short: "Remove one or more containers",
		Long:  "Remove containers. A running container is refused unless --force, which kills it first.",
		Example: `  berth rm 9c1e
  berth rm -f web
  berth rm -a`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && !all {
				return errors.New("give a CONTAINER or --all")
			}
			return g.withClient(func(c *client) error {
				if all {
					ctrs, err := c.listContainers(&ctrListOptions{all: true})
					if err != nil {
						return err
					}
					args = append(args, ids(ctrs)...)
				}
				return eachID(args, c.resolveContainer, func(id string) error {
					ctx, cancel := c.ctx()
					defer cancel()
					st, err := c.runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
					if err != nil {
						return fmt.Errorf("container status of %s: %w", id, err)
					}
					if st.GetStatus().GetState() == runtimeapi.ContainerState_CONTAINER_RUNNING {
						if !force {
							return fmt.Errorf("container %s is running: stop it first or use --force", id)
						}
						if err := c.stop(id, 0); err != nil {
							return err
						}
					}
					if _, err := c.runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
						return fmt.Errorf("remove container %s: %w", id, err)
					}
					fmt.Fprintln(cmd.OutOrStdout(), id)
					return nil
				})
			})
		},
		ValidArgsFunction: completeContainers(g),
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill running containers before removing them")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove every container")
	return cmd
}
