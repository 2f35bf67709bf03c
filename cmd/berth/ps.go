package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Labels the kubelet puts on every container, naming its pod.
const (
	podNameLabel      = "io.kubernetes.pod.name"
	podNamespaceLabel = "io.kubernetes.pod.namespace"
)

// ctrListOptions select and format containers.
type ctrListOptions struct {
	all, quiet, noTrunc, latest, verbose   bool
	pod, id, name, namespace, state, image string
	labels                                 []string
	last                                   int
	output                                 outputFormat
}

func psCommand(g *globals) *cobra.Command {
	o := &ctrListOptions{}
	cmd := &cobra.Command{
		Use:   "ps",
		Short: "List containers",
		Long:  "List running containers; -a lists every container, --state those in one state.",
		Example: `  berth ps
  berth ps -a --pod 3f2a
  berth ps --namespace kube-system
  berth ps --label io.kubernetes.container.name=web -q
  berth ps -v
  berth ps -o json
  berth ps -a -o go-template --template '{{range .containers}}{{.metadata.name}} {{.state}}{{"\n"}}{{end}}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withClient(func(c *client) error {
				pods := c.podsByID()
				ctrs, err := c.listContainers(o, pods)
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				return printList(w, o.quiet, o.output, ctrs, &runtimeapi.ListContainersResponse{Containers: ctrs}, func() error {
					if o.verbose {
						return printContainersVerbose(w, ctrs, pods, time.Now())
					}
					return printContainerTable(w, ctrs, pods, o.noTrunc, time.Now())
				})
			})
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.all, "all", "a", false, "show every container, not only running ones")
	f.StringVarP(&o.pod, "pod", "p", "", "only containers of this pod (ID, ID prefix or name)")
	f.StringVar(&o.id, "id", "", "only the container with this ID (or ID prefix)")
	f.StringVar(&o.name, "name", "", "only containers whose name matches this regular expression")
	f.StringVar(&o.namespace, "namespace", "", "only containers whose pod's namespace matches this regular expression")
	f.StringVarP(&o.state, "state", "s", "", "only containers in this state: created, running, exited or unknown")
	f.StringVar(&o.image, "image", "", "only containers of this image (name or ID prefix)")
	f.StringSliceVar(&o.labels, "label", nil, "only containers with this label, key=value (repeatable)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "print container IDs only")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "print every field of each container instead of the table")
	f.BoolVar(&o.noTrunc, "no-trunc", false, "show full IDs")
	f.BoolVarP(&o.latest, "latest", "l", false, "only the most recently created container")
	f.IntVarP(&o.last, "last", "n", 0, "only the n most recently created containers")
	addOutputFlag(cmd, &o.output, formatTable, formatJSON, formatYAML)
	_ = cmd.RegisterFlagCompletionFunc("pod", completePods(g))
	return cmd
}

// listContainers lists the containers the options select, newest first;
// pods (by ID) name each container's pod for --namespace.
func (c *client) listContainers(o *ctrListOptions, pods map[string]*runtimeapi.PodSandboxMetadata) ([]*runtimeapi.Container, error) {
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
	nsRE, err := optionalRegexp("--namespace", o.namespace)
	if err != nil {
		return nil, err
	}
	resp, err := call(c, "list containers", c.listContainersRPC, &runtimeapi.ListContainersRequest{Filter: filter})
	if err != nil {
		return nil, err
	}
	var ctrs []*runtimeapi.Container
	for _, ctr := range resp.Containers {
		if !strings.HasPrefix(ctr.Id, o.id) || !nameRE.MatchString(ctr.GetMetadata().GetName()) || !matchImage(ctr, o.image) ||
			(o.namespace != "" && !nsRE.MatchString(podOf(ctr, pods).namespace)) {
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

// podsByID maps pod IDs to their metadata for the ps table and its
// filters; best effort (empty when the pods cannot be listed).
func (c *client) podsByID() map[string]*runtimeapi.PodSandboxMetadata {
	pods := map[string]*runtimeapi.PodSandboxMetadata{}
	resp, err := call(c, "list pod sandboxes", c.listPodSandboxRPC, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return pods
	}
	for _, p := range resp.Items {
		pods[p.Id] = p.GetMetadata()
	}
	return pods
}

type podName struct{ name, namespace string }

// podOf names a container's pod from the pod list, or else from the
// labels the kubelet sets.
func podOf(ctr *runtimeapi.Container, pods map[string]*runtimeapi.PodSandboxMetadata) podName {
	if md, ok := pods[ctr.PodSandboxId]; ok && md != nil {
		return podName{md.Name, md.Namespace}
	}
	return podName{ctr.Labels[podNameLabel], ctr.Labels[podNamespaceLabel]}
}

// printContainerTable prints containers in crictl's columns.
func printContainerTable(out io.Writer, ctrs []*runtimeapi.Container, pods map[string]*runtimeapi.PodSandboxMetadata, noTrunc bool, now time.Time) error {
	w := newTable(out)
	fmt.Fprintln(w, "CONTAINER\tIMAGE\tCREATED\tSTATE\tNAME\tATTEMPT\tPOD ID\tPOD\tNAMESPACE")
	for _, ctr := range ctrs {
		pod := podOf(ctr, pods)
		md := ctr.GetMetadata()
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", shortID(ctr.Id, noTrunc), imageColumn(ctr.GetImage().GetImage(), noTrunc),
			ago(ctr.CreatedAt, now), containerState(ctr.State), md.GetName(), md.GetAttempt(), shortID(ctr.PodSandboxId, noTrunc), pod.name, pod.namespace)
	}
	return w.Flush()
}

// printContainersVerbose prints each container's fields, as crictl ps -v.
func printContainersVerbose(w io.Writer, ctrs []*runtimeapi.Container, pods map[string]*runtimeapi.PodSandboxMetadata, now time.Time) error {
	for _, ctr := range ctrs {
		pod := podOf(ctr, pods)
		fmt.Fprintf(w, "ID: %s\nPodID: %s\nPod: %s\nNamespace: %s\n", ctr.Id, ctr.PodSandboxId, pod.name, pod.namespace)
		if md := ctr.GetMetadata(); md != nil {
			fmt.Fprintf(w, "Name: %s\nAttempt: %d\n", md.Name, md.Attempt)
		}
		fmt.Fprintf(w, "State: %s\nImage: %s\nImageRef: %s\nCreated: %s\n", containerState(ctr.State), ctr.GetImage().GetImage(), ctr.ImageRef, ago(ctr.CreatedAt, now))
		printMap(w, "Labels", ctr.Labels)
		printMap(w, "Annotations", ctr.Annotations)
		if _, err := fmt.Fprintln(w); err != nil {
			return err
		}
	}
	return nil
}

// printMap prints labels or annotations sorted, one "key -> value" a line.
func printMap(w io.Writer, title string, m map[string]string) {
	if len(m) == 0 {
		return
	}
	fmt.Fprintf(w, "%s:\n", title)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(w, "\t%s -> %s\n", k, m[k])
	}
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
