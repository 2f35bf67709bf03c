package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/api/resource"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// pullFlags are the image pull options of create and run.
type pullFlags struct {
	noPull, withPull bool
	creds, auth      string
}

func (p *pullFlags) register(cmd *cobra.Command, withPull bool) {
	cmd.Flags().BoolVar(&p.noPull, "no-pull", false, "do not pull the image, even when it is missing")
	if withPull {
		cmd.Flags().BoolVar(&p.withPull, "with-pull", false, "pull the image when it is missing (pull-image-on-create in the client config)")
	}
	cmd.Flags().StringVar(&p.creds, "creds", "", "registry credentials for the pull, USERNAME[:PASSWORD]")
	cmd.Flags().StringVar(&p.auth, "auth", "", "registry credentials for the pull, base64 of USERNAME:PASSWORD")
}

// ensureImage pulls the container's image when it is missing.
func (c *client) ensureImage(ctx context.Context, cfg *runtimeapi.ContainerConfig, pod *runtimeapi.PodSandboxConfig, p *pullFlags) error {
	st, err := call(c, "image status of "+cfg.Image.Image, c.images.ImageStatus, &runtimeapi.ImageStatusRequest{Image: cfg.Image})
	if err != nil {
		return err
	}
	if st.Image != nil {
		return nil
	}
	auth, err := pullAuth(p.creds, p.auth)
	if err != nil {
		return err
	}
	_, err = c.pull(ctx, &runtimeapi.PullImageRequest{Image: cfg.Image, Auth: auth, SandboxConfig: pod}, 0, true)
	return err
}

// create creates a container. pullHint is the next step to suggest when
// the image is not in the runtime.
func (c *client) create(podID string, cfg *runtimeapi.ContainerConfig, pod *runtimeapi.PodSandboxConfig, pullHint string) (string, error) {
	what := "create container " + cfg.GetMetadata().GetName()
	resp, err := call(c, what, c.runtime.CreateContainer,
		&runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
	if status.Code(err) == codes.NotFound {
		// The pod was found just before: most likely the image is
		// missing, which only an ImageStatus tells for sure.
		ctx, cancel := c.ctx()
		defer cancel()
		st, serr := c.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: cfg.GetImage()})
		if serr == nil && st.GetImage() == nil {
			return "", fmt.Errorf("%s: image %q not found locally; %s", what, cfg.GetImage().GetImage(), pullHint)
		}
	}
	return resp.GetContainerId(), err
}

func createCommand(g *globals) *cobra.Command {
	p := &pullFlags{}
	cmd := &cobra.Command{
		Use:   "create POD CONTAINER-CONFIG POD-CONFIG",
		Short: "Create a container in a pod sandbox",
		Long: `Create a container from a CRI ContainerConfig (JSON or YAML) in the pod POD
(an ID, unique ID prefix or name), whose PodSandboxConfig is POD-CONFIG, and
print the container's ID. The image is pulled first only with --with-pull
(or pull-image-on-create in the client config).`,
		Example: `  berth create 3f2a ctr.yaml pod.yaml
  berth create --with-pull web ctr.json pod.json`,
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctrCfg, podCfg, err := loadConfigs(args[1], args[2])
			if err != nil {
				return err
			}
			return g.withClient(func(c *client) error {
				pod, err := c.resolvePod(args[0])
				if err != nil {
					return err
				}
				if (p.withPull || c.settings.pullImageOnCreate) && !p.noPull {
					if err := c.ensureImage(cmd.Context(), ctrCfg, podCfg, p); err != nil {
						return err
					}
				}
				id, err := c.create(pod.Id, ctrCfg, podCfg, "pull it or use --with-pull")
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), id)
				return nil
			})
		},
		ValidArgsFunction: completePods(g),
	}
	p.register(cmd, true)
	return cmd
}

func runCommand(g *globals) *cobra.Command {
	p := &pullFlags{}
	var handler string
	cmd := &cobra.Command{
		Use:   "run CONTAINER-CONFIG POD-CONFIG",
		Short: "Run a new container in a new pod sandbox",
		Long: `Run a pod sandbox from POD-CONFIG, pull the image if it is missing, create
a container from CONTAINER-CONFIG in it and start it, as crictl run does, and
print the container's ID. If a step fails, the pod made for it is removed
(a pod that already ran with the same metadata, which the runtime answers
with, is left alone).`,
		Example: `  berth run ctr.yaml pod.yaml
  berth run --runtime runc --no-pull ctr.json pod.json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctrCfg, podCfg, err := loadConfigs(args[0], args[1])
			if err != nil {
				return err
			}
			return g.withClient(func(c *client) error {
				// RunPodSandbox answers a ready pod of the same metadata
				// with that pod: such a pod is not run's to remove.
				before, err := c.podIDs()
				if err != nil {
					return err
				}
				podID, err := c.runPod(podCfg, handler)
				if err != nil {
					return err
				}
				id, err := c.createAndStart(cmd.Context(), podID, ctrCfg, podCfg, p)
				if err != nil {
					if before[podID] {
						return fmt.Errorf("%w (pod sandbox %s existed before and is left as it was)", err, podID)
					}
					if cerr := c.removePod(podID); cerr != nil {
						return errors.Join(err, cerr)
					}
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), id)
				return nil
			})
		},
	}
	p.register(cmd, false)
	cmd.Flags().StringVar(&handler, "runtime", "", "runtime handler (empty: the runtime's default)")
	return cmd
}

// podIDs are the ids of every pod sandbox there is.
func (c *client) podIDs() (map[string]bool, error) {
	resp, err := call(c, "list pod sandboxes", c.runtime.ListPodSandbox, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return nil, err
	}
	ids := make(map[string]bool, len(resp.GetItems()))
	for _, p := range resp.GetItems() {
		ids[p.GetId()] = true
	}
	return ids, nil
}

// removePod stops and removes the pod run made, under one deadline.
func (c *client) removePod(podID string) error {
	ctx, cancel := c.ctx()
	defer cancel()
	_, err := c.runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID})
	if err == nil {
		_, err = c.runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID})
	}
	if err != nil {
		return fmt.Errorf("clean up pod sandbox %s: %w", podID, err)
	}
	return nil
}

func (c *client) createAndStart(ctx context.Context, podID string, cfg *runtimeapi.ContainerConfig, pod *runtimeapi.PodSandboxConfig, p *pullFlags) (string, error) {
	if !p.noPull && !c.settings.disablePullOnRun {
		if err := c.ensureImage(ctx, cfg, pod, p); err != nil {
			return "", err
		}
	}
	hint := "pull it or leave out --no-pull"
	if !p.noPull {
		hint = "pull it (disable-pull-on-run is set in the client config)"
	}
	id, err := c.create(podID, cfg, pod, hint)
	if err != nil {
		return "", err
	}
	return id, c.start(id)
}

// resourceFlags are update's options; only those given change anything.
type resourceFlags struct {
	cpuPeriod, cpuQuota, cpuShares int64
	cpusetCPUs, cpusetMems         string
	memory, memorySwap             string
}

func updateCommand(g *globals) *cobra.Command {
	r := &resourceFlags{}
	cmd := &cobra.Command{
		Use:   "update [flags] CONTAINER [CONTAINER...]",
		Short: "Update the resources of one or more containers",
		Long: `Update containers' Linux resources. The flags given change the container's
current resources (as its status reports them); the rest keep their values.
Memory takes a size: bytes, or a quantity such as 512Mi or 1G.`,
		Example: `  berth update --memory 256Mi 9c1e
  berth update --cpu-quota 50000 --cpu-period 100000 web`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(func(c *client) error {
				return eachID(args, c.resolveContainer, func(id string) error {
					ctx, cancel := c.ctx()
					defer cancel()
					st, err := c.runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
					if err != nil {
						return fmt.Errorf("container status of %s: %w", id, err)
					}
					res, err := r.apply(cmd, st.GetStatus().GetResources().GetLinux())
					if err != nil {
						return err
					}
					if _, err := c.runtime.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: res}); err != nil {
						return fmt.Errorf("update container %s: %w", id, err)
					}
					fmt.Fprintln(cmd.OutOrStdout(), id)
					return nil
				})
			})
		},
		ValidArgsFunction: completeContainers(g),
	}
	r.register(cmd.Flags())
	return cmd
}

func (r *resourceFlags) register(f *pflag.FlagSet) {
	f.Int64Var(&r.cpuPeriod, "cpu-period", 0, "CPU CFS period, microseconds")
	f.Int64Var(&r.cpuQuota, "cpu-quota", 0, "CPU CFS quota, microseconds per period")
	f.Int64Var(&r.cpuShares, "cpu-share", 0, "CPU shares (relative weight)")
	f.StringVar(&r.cpusetCPUs, "cpuset-cpus", "", "CPUs to run on, e.g. 0-2,4")
	f.StringVar(&r.cpusetMems, "cpuset-mems", "", "memory nodes to use, e.g. 0")
	f.StringVar(&r.memory, "memory", "", "memory limit")
	f.StringVar(&r.memorySwap, "memory-swap", "", "memory plus swap limit")
}

// apply overlays the flags given on the current resources.
func (r *resourceFlags) apply(cmd *cobra.Command, cur *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error) {
	res := &runtimeapi.LinuxContainerResources{}
	if cur != nil {
		res = proto.Clone(cur).(*runtimeapi.LinuxContainerResources)
	}
	f := cmd.Flags()
	changed := false
	set := func(name string, fn func() error) error {
		if !f.Changed(name) {
			return nil
		}
		changed = true
		return fn()
	}
	size := func(flag, v string, dst *int64) func() error {
		return func() error {
			q, err := resource.ParseQuantity(v)
			if err != nil {
				return fmt.Errorf("--%s %q: want a size such as 268435456 or 256Mi", flag, v)
			}
			*dst = q.Value()
			return nil
		}
	}
	for _, err := range []error{
		set("cpu-period", func() error { res.CpuPeriod = r.cpuPeriod; return nil }),
		set("cpu-quota", func() error { res.CpuQuota = r.cpuQuota; return nil }),
		set("cpu-share", func() error { res.CpuShares = r.cpuShares; return nil }),
		set("cpuset-cpus", func() error { res.CpusetCpus = r.cpusetCPUs; return nil }),
		set("cpuset-mems", func() error { res.CpusetMems = r.cpusetMems; return nil }),
		set("memory", size("memory", r.memory, &res.MemoryLimitInBytes)),
		set("memory-swap", size("memory-swap", r.memorySwap, &res.MemorySwapLimitInBytes)),
	} {
		if err != nil {
			return nil, err
		}
	}
	if !changed {
		return nil, errors.New("give at least one resource flag to change")
	}
	return res, nil
}
