package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// runner drives one daemon through every row and records the results.
type runner struct {
	d     *daemon
	env   *environment
	n     int
	pods  int
	seq   int
	res   map[string]float64
	notes map[string]string
}

// podKind is one of the two pod shapes every cycle row is measured for.
type podKind struct {
	label string
	pid   runtimeapi.NamespaceMode
}

var podKinds = []podKind{
	{"shared PID ns", runtimeapi.NamespaceMode_POD},
	{"PID ns per container", runtimeapi.NamespaceMode_CONTAINER},
}

func (r *runner) name(prefix string) string {
	r.seq++
	return fmt.Sprintf("%s-%d", prefix, r.seq)
}

func (r *runner) podConfig(name string, pid runtimeapi.NamespaceMode) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "bench", Uid: name},
		Hostname:     name,
		LogDirectory: filepath.Join(r.d.dir, "pod-logs", name),
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: "/benchcompare",
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: pid},
			},
		},
	}
}

func (r *runner) containerConfig(name string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: r.env.images.busybox},
		Command:  []string{"/bin/sleep", "3600"},
		LogPath:  name + ".log",
		Linux:    &runtimeapi.LinuxContainerConfig{},
	}
}

// stopwatch collects samples per row.
type stopwatch map[string][]time.Duration

func (s stopwatch) time(row string, f func() error) error {
	start := time.Now()
	err := f()
	s[row] = append(s[row], time.Since(start))
	if err != nil {
		return fmt.Errorf("%s: %w", row, err)
	}
	return nil
}

func (r *runner) record(s stopwatch) {
	for row, samples := range s {
		r.res[row] = ms(quantile(samples, 0.5))
	}
}

func quantile(samples []time.Duration, q float64) time.Duration {
	s := append([]time.Duration(nil), samples...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// podCycles measures RunPodSandbox, StopPodSandbox and RemovePodSandbox
// and the daemon's CPU per cycle.
func (r *runner) podCycles(ctx context.Context, k podKind) error {
	s := stopwatch{}
	cpu0 := cpuSeconds(r.d.cmd.Process.Pid)
	for range r.n {
		pc := r.podConfig(r.name("cycle"), k.pid)
		var id string
		err := s.time("RunPodSandbox/"+k.label, func() error {
			resp, err := r.d.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
			id = resp.GetPodSandboxId()
			return err
		})
		if err == nil {
			err = s.time("StopPodSandbox/"+k.label, func() error {
				_, err := r.d.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
				return err
			})
		}
		if err == nil {
			err = s.time("RemovePodSandbox/"+k.label, func() error {
				_, err := r.d.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
				return err
			})
		}
		if err != nil {
			return err
		}
		s["whole pod cycle/"+k.label] = append(s["whole pod cycle/"+k.label],
			last(s["RunPodSandbox/"+k.label])+last(s["StopPodSandbox/"+k.label])+last(s["RemovePodSandbox/"+k.label]))
	}
	r.res["daemon CPU s per pod cycle/"+k.label] = (cpuSeconds(r.d.cmd.Process.Pid) - cpu0) / float64(r.n)
	r.record(s)
	return nil
}

func last(s []time.Duration) time.Duration { return s[len(s)-1] }

// containerCycles measures the four container calls in one pod of kind k;
// it returns that pod and one running container in it for ExecSync.
func (r *runner) containerCycles(ctx context.Context, k podKind) (pod *runtimeapi.PodSandboxConfig, podID, ctrID string, err error) {
	pod = r.podConfig(r.name("base"), k.pid)
	resp, err := r.d.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pod})
	if err != nil {
		return nil, "", "", err
	}
	podID = resp.PodSandboxId
	s := stopwatch{}
	steps := []string{"CreateContainer", "StartContainer", "StopContainer", "RemoveContainer"}
	for range r.n {
		var id string
		err := s.time("CreateContainer/"+k.label, func() error {
			c, err := r.d.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
				PodSandboxId: podID, SandboxConfig: pod, Config: r.containerConfig(r.name("c"))})
			id = c.GetContainerId()
			return err
		})
		if err == nil {
			err = s.time("StartContainer/"+k.label, func() error {
				_, err := r.d.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
				return err
			})
		}
		if err == nil {
			err = s.time("StopContainer/"+k.label, func() error {
				_, err := r.d.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 0})
				return err
			})
		}
		if err == nil {
			err = s.time("RemoveContainer/"+k.label, func() error {
				_, err := r.d.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
				return err
			})
		}
		if err != nil {
			return nil, "", "", err
		}
		var whole time.Duration
		for _, st := range steps {
			whole += last(s[st+"/"+k.label])
		}
		s["whole container cycle/"+k.label] = append(s["whole container cycle/"+k.label], whole)
	}
	r.record(s)
	ctrID, err = r.podToRunning(ctx, pod, podID)
	return pod, podID, ctrID, err
}

// podToRunning creates and starts one container in an existing pod.
func (r *runner) podToRunning(ctx context.Context, pod *runtimeapi.PodSandboxConfig, podID string) (string, error) {
	c, err := r.d.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: podID, SandboxConfig: pod, Config: r.containerConfig(r.name("c"))})
	if err != nil {
		return "", err
	}
	_, err = r.d.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId})
	return c.ContainerId, err
}

// runningPod is RunPodSandbox + CreateContainer + StartContainer.
func (r *runner) runningPod(ctx context.Context, name string, pid runtimeapi.NamespaceMode) (string, error) {
	pc := r.podConfig(name, pid)
	resp, err := r.d.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
	if err != nil {
		return "", err
	}
	_, err = r.podToRunning(ctx, pc, resp.PodSandboxId)
	return resp.PodSandboxId, err
}

func (r *runner) removePods(ctx context.Context, ids []string) { removePods(ctx, r.d.rt, ids) }

// podsToRunning measures pod-to-running one at a time, then with 10
// concurrent clients (pods per second).
func (r *runner) podsToRunning(ctx context.Context, k podKind) error {
	s := stopwatch{}
	var ids []string
	for range r.n {
		name := r.name("ptr")
		err := s.time("pod-to-running sequential/"+k.label, func() error {
			id, err := r.runningPod(ctx, name, k.pid)
			ids = append(ids, id)
			return err
		})
		if err != nil {
			return err
		}
	}
	r.record(s)
	r.removePods(ctx, ids)

	const clients = 10
	perClient := max(2, r.n/5)
	names := make([][]string, clients)
	for c := range clients {
		for range perClient {
			names[c] = append(names[c], r.name("conc"))
		}
	}
	var mu sync.Mutex
	var firstErr error
	ids = nil
	var wg sync.WaitGroup
	start := time.Now()
	for c := range clients {
		wg.Go(func() {
			for _, name := range names[c] {
				id, err := r.runningPod(ctx, name, k.pid)
				mu.Lock()
				ids = append(ids, id)
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	r.res["pod-to-running 10 clients (pods/s)/"+k.label] = float64(clients*perClient) / time.Since(start).Seconds()
	r.removePods(ctx, ids)
	return firstErr
}
