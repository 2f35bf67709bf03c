package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// statsCommands are stats, statsp and events.
func statsCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{statsCommand(g), statspCommand(g), eventsCommand(g)}
}

// statsOptions select and format the stats.
type statsOptions struct {
	all, watch bool
	id, pod    string
	labels     []string
	output     outputFormat
	interval   time.Duration
}

func statsCommand(g *globals) *cobra.Command {
	o := &statsOptions{}
	cmd := &cobra.Command{
		Use:   "stats [CONTAINER...]",
		Short: "Show containers' resource usage",
		Long: `Show the CPU, memory, writable layer and swap usage of running containers
(-a: of all containers). CPU % is the runtime's rate when it reports one,
else measured between two samples.`,
		Example: `  berth stats
  berth stats --pod 3f2a -o json
  berth stats --watch --interval 2s`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(func(c *client) error {
				filter := &runtimeapi.ContainerStatsFilter{}
				var err error
				if filter.LabelSelector, err = parseLabels(o.labels); err != nil {
					return err
				}
				if o.pod != "" {
					p, err := c.resolvePod(o.pod)
					if err != nil {
						return err
					}
					filter.PodSandboxId = p.Id
				}
				refs := args
				if o.id != "" {
					refs = append(refs, o.id)
				}
				ids, err := c.resolveContainers(refs)
				if err != nil {
					return err
				}
				return watchLoop(cmd, o, func(prev map[string]*runtimeapi.CpuUsage) (map[string]*runtimeapi.CpuUsage, error) {
					return c.printContainerStats(cmd.OutOrStdout(), filter, ids, o, prev)
				})
			})
		},
		ValidArgsFunction: completeContainers(g),
	}
	f := cmd.Flags()
	f.BoolVarP(&o.all, "all", "a", false, "include containers that are not running")
	f.StringVar(&o.id, "id", "", "only this container (ID, ID prefix or name)")
	f.StringVarP(&o.pod, "pod", "p", "", "only containers of this pod")
	f.StringSliceVar(&o.labels, "label", nil, "only containers with this label, key=value (repeatable)")
	f.BoolVarP(&o.watch, "watch", "w", false, "refresh until interrupted")
	f.DurationVar(&o.interval, "interval", time.Second, "refresh interval of --watch")
	addOutputFlag(cmd, &o.output, formatTable, formatJSON, formatYAML)
	return cmd
}

// watchLoop runs print once, or with --watch every interval until
// interrupted, handing each round the previous round's CPU samples.
func watchLoop(cmd *cobra.Command, o *statsOptions, print func(map[string]*runtimeapi.CpuUsage) (map[string]*runtimeapi.CpuUsage, error)) error {
	prev, err := print(nil)
	if err != nil || !o.watch {
		return err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	clear := term.IsTerminal(int(os.Stdout.Fd())) && o.output.table()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(o.interval):
		}
		if clear {
			fmt.Fprint(cmd.OutOrStdout(), "\033[2J\033[H")
		}
		if prev, err = print(prev); err != nil {
			return err
		}
	}
}

func (c *client) printContainerStats(w io.Writer, filter *runtimeapi.ContainerStatsFilter, ids []string, o *statsOptions, prev map[string]*runtimeapi.CpuUsage) (map[string]*runtimeapi.CpuUsage, error) {
	stats, err := c.containerStats(filter, ids, o.all)
	if err != nil {
		return nil, err
	}
	if !o.output.table() {
		return nil, printProto(w, o.output, &runtimeapi.ListContainerStatsResponse{Stats: stats})
	}
	needRate := false
	for _, s := range stats {
		needRate = needRate || s.GetCpu().GetUsageNanoCores() == nil
	}
	if needRate && prev == nil {
		// A first round without rates: take a second sample to measure one.
		prev = cpuSamples(stats)
		time.Sleep(time.Second)
		if stats, err = c.containerStats(filter, ids, o.all); err != nil {
			return nil, err
		}
	}
	t := newTable(w)
	fmt.Fprintln(t, "CONTAINER\tNAME\tCPU %\tMEM\tDISK\tINODES\tSWAP")
	for _, s := range stats {
		a := s.GetAttributes()
		fmt.Fprintf(t, "%s\t%s\t%.2f\t%s\t%s\t%d\t%s\n", shortID(a.GetId(), false), a.GetMetadata().GetName(),
			cpuPercent(s.GetCpu(), prev[a.GetId()]), humanSize(s.GetMemory().GetWorkingSetBytes().GetValue()),
			humanSize(s.GetWritableLayer().GetUsedBytes().GetValue()), s.GetWritableLayer().GetInodesUsed().GetValue(),
			humanSize(s.GetSwap().GetSwapUsageBytes().GetValue()))
	}
	return cpuSamples(stats), t.Flush()
}

// containerStats lists stats, keeping the given IDs (all when none) and,
// unless all, running containers only.
func (c *client) containerStats(filter *runtimeapi.ContainerStatsFilter, ids []string, all bool) ([]*runtimeapi.ContainerStats, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	resp, err := c.listContainerStatsRPC(ctx, &runtimeapi.ListContainerStatsRequest{Filter: filter})
	if err != nil {
		return nil, fmt.Errorf("list container stats: %w", err)
	}
	keep := map[string]bool{}
	for _, id := range ids {
		keep[id] = true
	}
	running := map[string]bool{}
	if !all {
		list, err := c.listContainersRPC(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
			State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
		}})
		if err != nil {
			return nil, fmt.Errorf("list containers: %w", err)
		}
		for _, ctr := range list.Containers {
			running[ctr.Id] = true
		}
	}
	var out []*runtimeapi.ContainerStats
	for _, s := range resp.Stats {
		id := s.GetAttributes().GetId()
		if (len(ids) > 0 && !keep[id]) || (!all && !running[id]) {
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

func cpuSamples(stats []*runtimeapi.ContainerStats) map[string]*runtimeapi.CpuUsage {
	m := make(map[string]*runtimeapi.CpuUsage, len(stats))
	for _, s := range stats {
		m[s.GetAttributes().GetId()] = s.GetCpu()
	}
	return m
}

// cpuPercent is the runtime's rate when it has one, else the rate between
// two cumulative samples; 100 is one core.
func cpuPercent(cur, prev *runtimeapi.CpuUsage) float64 {
	if n := cur.GetUsageNanoCores(); n != nil {
		return float64(n.GetValue()) / 1e7
	}
	if prev == nil || cur.GetUsageCoreNanoSeconds() == nil || prev.GetUsageCoreNanoSeconds() == nil {
		return 0
	}
	dt := cur.GetTimestamp() - prev.GetTimestamp()
	used := cur.GetUsageCoreNanoSeconds().GetValue()
	before := prev.GetUsageCoreNanoSeconds().GetValue()
	if dt <= 0 || used < before {
		return 0
	}
	return float64(used-before) / float64(dt) * 100
}

func statspCommand(g *globals) *cobra.Command {
	o := &statsOptions{}
	cmd := &cobra.Command{
		Use:   "statsp [POD...]",
		Short: "Show pod sandboxes' resource usage",
		Example: `  berth statsp
  berth statsp 3f2a -o yaml
  berth statsp --label app=web --watch`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(func(c *client) error {
				filter := &runtimeapi.PodSandboxStatsFilter{}
				var err error
				if filter.LabelSelector, err = parseLabels(o.labels); err != nil {
					return err
				}
				keep := map[string]bool{}
				for _, ref := range args {
					p, err := c.resolvePod(ref)
					if err != nil {
						return err
					}
					keep[p.Id] = true
				}
				return watchLoop(cmd, o, func(prev map[string]*runtimeapi.CpuUsage) (map[string]*runtimeapi.CpuUsage, error) {
					resp, err := call(c, "list pod stats", c.listPodSandboxStatsRPC, &runtimeapi.ListPodSandboxStatsRequest{Filter: filter})
					if err != nil {
						return nil, err
					}
					var stats []*runtimeapi.PodSandboxStats
					for _, s := range resp.Stats {
						if len(keep) == 0 || keep[s.GetAttributes().GetId()] {
							stats = append(stats, s)
						}
					}
					if !o.output.table() {
						return nil, printProto(cmd.OutOrStdout(), o.output, &runtimeapi.ListPodSandboxStatsResponse{Stats: stats})
					}
					return printPodStats(cmd.OutOrStdout(), stats, prev)
				})
			})
		},
		ValidArgsFunction: completePods(g),
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.labels, "label", nil, "only pods with this label, key=value (repeatable)")
	f.BoolVarP(&o.watch, "watch", "w", false, "refresh until interrupted")
	f.DurationVar(&o.interval, "interval", time.Second, "refresh interval of --watch")
	addOutputFlag(cmd, &o.output, formatTable, formatJSON, formatYAML)
	return cmd
}

func printPodStats(w io.Writer, stats []*runtimeapi.PodSandboxStats, prev map[string]*runtimeapi.CpuUsage) (map[string]*runtimeapi.CpuUsage, error) {
	t := newTable(w)
	fmt.Fprintln(t, "POD\tNAME\tCPU %\tMEM")
	next := map[string]*runtimeapi.CpuUsage{}
	for _, s := range stats {
		a := s.GetAttributes()
		cpu := s.GetLinux().GetCpu()
		next[a.GetId()] = cpu
		fmt.Fprintf(t, "%s\t%s\t%.2f\t%s\n", shortID(a.GetId(), false), a.GetMetadata().GetName(),
			cpuPercent(cpu, prev[a.GetId()]), humanSize(s.GetLinux().GetMemory().GetWorkingSetBytes().GetValue()))
	}
	return next, t.Flush()
}

// eventRow lays out an events table row; events stream, so the columns
// are fixed rather than measured.
const eventRow = "%-32s   %-28s   %-13s   %s\n"

func eventsCommand(g *globals) *cobra.Command {
	var out outputFormat
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Stream container events (GetContainerEvents)",
		Long:  "Print container lifecycle events as the runtime sends them, until interrupted.",
		Example: `  berth events
  berth events -o table`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withClient(func(c *client) error {
				return printEvents(cmd, c, out)
			})
		},
	}
	addOutputFlag(cmd, &out, formatJSON, formatYAML, formatTable)
	return cmd
}

// printEvents prints container events until interrupted or the stream ends.
func printEvents(cmd *cobra.Command, c *client, out outputFormat) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, err := c.runtime.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		return fmt.Errorf("get container events: %w", err)
	}
	w := cmd.OutOrStdout()
	if out.table() {
		fmt.Fprintf(w, eventRow, "TIME", "EVENT", "CONTAINER", "POD")
	}
	for {
		ev, err := st.Recv()
		if err != nil {
			// gRPC may see the caller's deadline a moment before ctx does.
			_, deadline := ctx.Deadline()
			code := status.Code(err)
			if ctx.Err() != nil || errors.Is(err, io.EOF) || (deadline && (code == codes.DeadlineExceeded || code == codes.Canceled)) {
				return nil
			}
			return fmt.Errorf("receive container event: %w", err)
		}
		if !out.table() {
			if err := printProto(w, out, ev); err != nil {
				return err
			}
			if out.format == formatYAML {
				fmt.Fprintln(w, "---")
			}
			continue
		}
		fmt.Fprintf(w, eventRow, time.Unix(0, ev.CreatedAt).UTC().Format(time.RFC3339Nano), ev.ContainerEventType,
			shortID(ev.ContainerId, false), shortID(ev.GetPodSandboxStatus().GetId(), false))
	}
}
