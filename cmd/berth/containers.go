package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// containerCommands are the container lifecycle commands.
func containerCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{psCommand(g), inspectCommand(g), createCommand(g), startCommand(g), stopCommand(g),
		rmCommand(g), runCommand(g), updateCommand(g)}
}

func inspectCommand(g *globals) *cobra.Command {
	var out outputFormat
	cmd := &cobra.Command{
		Use:   "inspect CONTAINER [CONTAINER...]",
		Short: "Show the status of one or more containers",
		Long:  "Show a container's CRI status and the verbose information the runtime reports. CONTAINER is an ID, a unique ID prefix or a name.",
		Example: `  berth inspect 9c1e
  berth inspect -o yaml web
  berth inspect web | jq .status.exitCode
  berth inspect -o go-template --template '{{.status.state}} {{.status.exitCode}}' web`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(func(c *client) error {
				return printStatuses(cmd.OutOrStdout(), out, args, func(ref string) (statusDoc, error) {
					st, err := c.containerStatus(ref, true)
					if err != nil {
						return nil, err
					}
					obj, err := containerStatusObject(st.GetStatus())
					return newStatusDoc(obj, st.GetInfo()), err
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
					ctrs, err := c.listContainers(&ctrListOptions{all: true}, nil)
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
