// Command nriplugin is an NRI plugin for berth's tests, built on the
// stub package of github.com/containerd/nri: it writes every event it
// gets, with the pod and container data, as one JSON line to a file, and
// can adjust containers (env, mount, rlimit, OOM score, annotation, CDI
// device), fail
// or hang an event. berthd runs it from nri_plugin_dir (through a script
// IDX-NAME that execs it with its flags), or a test starts it against
// nri_listen.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

// Record is one event as the plugin saw it; tests decode these lines.
type Record struct {
	Event       string            `json:"event"`
	Plugin      string            `json:"plugin"`
	PodID       string            `json:"pod_id,omitempty"`
	PodName     string            `json:"pod_name,omitempty"`
	PodUID      string            `json:"pod_uid,omitempty"`
	PodNS       string            `json:"pod_namespace,omitempty"`
	PodLabels   map[string]string `json:"pod_labels,omitempty"`
	CtrID       string            `json:"ctr_id,omitempty"`
	CtrName     string            `json:"ctr_name,omitempty"`
	CtrState    string            `json:"ctr_state,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Args        []string          `json:"args,omitempty"`
	Env         []string          `json:"env,omitempty"`
	Mounts      []string          `json:"mounts,omitempty"`
	Pid         uint32            `json:"pid,omitempty"`
	CgroupsPath string            `json:"cgroups_path,omitempty"`
	MemoryLimit int64             `json:"memory_limit,omitempty"`
	Namespaces  []string          `json:"namespaces,omitempty"`
	// SyncPods and SyncCtrs are the ids a synchronization carried.
	SyncPods []string `json:"sync_pods,omitempty"`
	SyncCtrs []string `json:"sync_ctrs,omitempty"`
}

type plugin struct {
	name string
	out  *os.File
	mu   sync.Mutex

	env        []string
	mounts     []string
	rlimits    []string
	annotation []string
	oomScore   string
	cdi        []string
	fail       map[string]int // event -> failures left
	hang       string
	// release makes RunPodSandbox wait, after it recorded the event,
	// until this file exists.
	release string
	// bulkEnv adds this many env vars to every container, to make a
	// response larger than the transport takes.
	bulkEnv int
	// updateMissing makes CreateContainer ask to update a container
	// that does not exist.
	updateMissing bool
	// updateShares makes CreateContainer ask to set the CPU shares of
	// the other running containers known.
	updateShares uint64
	known        map[string]map[string]string // container id -> labels
}

// others are the containers known besides id.
func (p *plugin) others(id string) map[string]map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]map[string]string{}
	for k, v := range p.known {
		if k != id {
			out[k] = v
		}
	}
	return out
}

func (p *plugin) know(c *api.Container, known bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if known {
		p.known[c.GetId()] = c.GetLabels()
	} else {
		delete(p.known, c.GetId())
	}
}

func (p *plugin) record(r Record) {
	r.Plugin = p.name
	b, _ := json.Marshal(r)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.out.Write(append(b, '\n'))
	p.out.Sync()
}

// trouble fails or hangs the event if told to.
func (p *plugin) trouble(ctx context.Context, event string) error {
	if p.hang == event {
		// Hung for good, deaf to the request's deadline: a plugin that
		// answers DeadlineExceeded when its context ends races the NRI
		// module's own timer, and the module fails the request instead
		// of dropping the plugin when the answer wins (see the closing
		// note of issue 16).
		time.Sleep(24 * time.Hour)
		return ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail[event] > 0 {
		p.fail[event]--
		return fmt.Errorf("test plugin %s refuses %s", p.name, event)
	}
	return nil
}

func podRecord(event string, pod *api.PodSandbox) Record {
	r := Record{Event: event, PodID: pod.GetId(), PodName: pod.GetName(), PodUID: pod.GetUid(),
		PodNS: pod.GetNamespace(), PodLabels: pod.GetLabels()}
	for _, ns := range pod.GetLinux().GetNamespaces() {
		r.Namespaces = append(r.Namespaces, ns.GetType()+"="+ns.GetPath())
	}
	return r
}

func ctrRecord(event string, pod *api.PodSandbox, c *api.Container) Record {
	r := podRecord(event, pod)
	r.Namespaces = nil
	r.CtrID, r.CtrName, r.CtrState = c.GetId(), c.GetName(), c.GetState().String()
	r.Labels, r.Annotations, r.Args, r.Env, r.Pid = c.GetLabels(), c.GetAnnotations(), c.GetArgs(), c.GetEnv(), c.GetPid()
	for _, m := range c.GetMounts() {
		r.Mounts = append(r.Mounts, m.GetDestination())
	}
	r.CgroupsPath = c.GetLinux().GetCgroupsPath()
	r.MemoryLimit = c.GetLinux().GetResources().GetMemory().GetLimit().GetValue()
	for _, ns := range c.GetLinux().GetNamespaces() {
		r.Namespaces = append(r.Namespaces, ns.GetType())
	}
	return r
}

func (p *plugin) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	r := Record{Event: "Synchronize", SyncPods: []string{}, SyncCtrs: []string{}}
	for _, pod := range pods {
		r.SyncPods = append(r.SyncPods, pod.GetId())
	}
	for _, c := range ctrs {
		r.SyncCtrs = append(r.SyncCtrs, c.GetId())
		if c.GetState() == api.ContainerState_CONTAINER_RUNNING {
			p.know(c, true)
		}
	}
	p.record(r)
	return nil, nil
}

func (p *plugin) RunPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	p.record(podRecord("RunPodSandbox", pod))
	if err := awaitFile(ctx, p.release); err != nil {
		return err
	}
	return p.trouble(ctx, "RunPodSandbox")
}

// awaitFile returns once the file exists ("" is not waited for).
func awaitFile(ctx context.Context, path string) error {
	if path == "" {
		return nil
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (p *plugin) UpdatePodSandbox(_ context.Context, pod *api.PodSandbox, _, _ *api.LinuxResources) error {
	p.record(podRecord("UpdatePodSandbox", pod))
	return nil
}

func (p *plugin) PostUpdatePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record(podRecord("PostUpdatePodSandbox", pod))
	return nil
}

func (p *plugin) StopPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record(podRecord("StopPodSandbox", pod))
	return nil
}

func (p *plugin) RemovePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record(podRecord("RemovePodSandbox", pod))
	return nil
}

func (p *plugin) CreateContainer(ctx context.Context, pod *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.record(ctrRecord("CreateContainer", pod, c))
	if err := p.trouble(ctx, "CreateContainer"); err != nil {
		return nil, nil, err
	}
	adj := &api.ContainerAdjustment{}
	for _, kv := range p.env {
		k, v, _ := strings.Cut(kv, "=")
		adj.AddEnv(k, v)
	}
	for _, kv := range p.annotation {
		k, v, _ := strings.Cut(kv, "=")
		adj.AddAnnotation(k, v)
	}
	for _, m := range p.mounts {
		src, dst, _ := strings.Cut(m, ":")
		adj.AddMount(&api.Mount{Source: src, Destination: dst, Type: "bind", Options: []string{"rbind", "ro"}})
	}
	for _, rl := range p.rlimits {
		parts := strings.Split(rl, ":")
		soft, _ := strconv.ParseUint(parts[1], 10, 64)
		hard, _ := strconv.ParseUint(parts[2], 10, 64)
		adj.AddRlimit(parts[0], hard, soft)
	}
	for _, name := range p.cdi {
		adj.AddCDIDevice(&api.CDIDevice{Name: name})
	}
	if p.oomScore != "" {
		v, _ := strconv.Atoi(p.oomScore)
		adj.SetLinuxOomScoreAdj(&v)
	}
	for i := range p.bulkEnv {
		adj.AddEnv(fmt.Sprintf("NRI_BULK_%d", i), "0123456789abcdef")
	}
	var updates []*api.ContainerUpdate
	if p.updateMissing {
		u := &api.ContainerUpdate{ContainerId: "no-such-container"}
		u.SetLinuxCPUShares(512)
		updates = append(updates, u)
	}
	for id := range p.others(c.GetId()) {
		if p.updateShares != 0 {
			u := &api.ContainerUpdate{ContainerId: id}
			u.SetLinuxCPUShares(p.updateShares)
			updates = append(updates, u)
		}
	}
	return adj, updates, nil
}

func (p *plugin) PostCreateContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) error {
	p.record(ctrRecord("PostCreateContainer", pod, c))
	return nil
}

func (p *plugin) StartContainer(ctx context.Context, pod *api.PodSandbox, c *api.Container) error {
	p.record(ctrRecord("StartContainer", pod, c))
	return p.trouble(ctx, "StartContainer")
}

func (p *plugin) PostStartContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) error {
	p.know(c, true)
	p.record(ctrRecord("PostStartContainer", pod, c))
	return nil
}

func (p *plugin) UpdateContainer(_ context.Context, pod *api.PodSandbox, c *api.Container, _ *api.LinuxResources) ([]*api.ContainerUpdate, error) {
	p.record(ctrRecord("UpdateContainer", pod, c))
	return nil, nil
}

func (p *plugin) PostUpdateContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) error {
	p.record(ctrRecord("PostUpdateContainer", pod, c))
	return nil
}

func (p *plugin) StopContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	p.know(c, false)
	p.record(ctrRecord("StopContainer", pod, c))
	return nil, nil
}

func (p *plugin) RemoveContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) error {
	p.record(ctrRecord("RemoveContainer", pod, c))
	return nil
}

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	p := &plugin{fail: map[string]int{}, known: map[string]map[string]string{}}
	var (
		name, idx, socket, logPath string
		fail                       list
		failTimes                  int
	)
	flag.StringVar(&name, "name", "", "plugin name (external plugins)")
	flag.StringVar(&idx, "idx", "", "plugin index (external plugins)")
	flag.StringVar(&socket, "socket", "", "NRI socket to connect to (external plugins)")
	flag.StringVar(&logPath, "log", "", "file the events are appended to")
	flag.Var((*list)(&p.env), "env", "KEY=VALUE added to every container")
	flag.Var((*list)(&p.mounts), "mount", "SRC:DST bind-mounted read-only into every container")
	flag.Var((*list)(&p.rlimits), "rlimit", "TYPE:SOFT:HARD set in every container")
	flag.Var((*list)(&p.annotation), "annotation", "KEY=VALUE added to every container")
	flag.StringVar(&p.oomScore, "oom-score-adj", "", "OOM score adjustment of every container")
	flag.Var((*list)(&p.cdi), "cdi", "fully qualified CDI device name injected into every container")
	flag.Var(&fail, "fail", "event to refuse (repeatable)")
	flag.IntVar(&failTimes, "fail-times", 1, "how many times -fail refuses")
	flag.StringVar(&p.hang, "hang", "", "event never answered")
	flag.StringVar(&p.release, "release-run-pod", "", "file RunPodSandbox waits for before it answers")
	flag.IntVar(&p.bulkEnv, "bulk-env", 0, "number of env vars added to every container")
	flag.BoolVar(&p.updateMissing, "update-missing", false, "CreateContainer asks to update a container that does not exist")
	flag.Uint64Var(&p.updateShares, "update-shares", 0, "CPU shares CreateContainer sets on the other running containers")
	flag.Parse()
	for _, ev := range fail {
		p.fail[ev] = failTimes
	}
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open event log:", err)
		os.Exit(1)
	}
	p.out = out
	var opts []stub.Option
	if name != "" {
		opts = append(opts, stub.WithPluginName(name))
	}
	if idx != "" {
		opts = append(opts, stub.WithPluginIdx(idx))
	}
	if socket != "" {
		opts = append(opts, stub.WithSocketPath(socket))
	}
	p.name = name
	if p.name == "" {
		p.name = os.Getenv("NRI_PLUGIN_NAME")
	}
	s, err := stub.New(p, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "create plugin:", err)
		os.Exit(1)
	}
	if err := s.Run(context.Background()); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "plugin exited:", err)
		os.Exit(1)
	}
}
