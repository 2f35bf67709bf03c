//go:build kubelet

package kubelet

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Each scenario of this file runs in parallel with the others on the one
// kubelet, with its own static pod; all but stats remove their manifest
// when done (the removal scenario later checks that nothing is left).

// testBasic: a static pod starts, runs, and its logs are readable.
func testBasic(t *testing.T, e *env) {
	e.writeManifest(t, newPod("basic", ctr("main", "echo hello-from-berth; echo second-line; exec sleep 3600")))
	t.Cleanup(func() { e.removeManifest(t, "basic") })
	p := e.waitPod(t, "basic", 3*time.Minute, running("main"))
	if cs := cstatus(p, "main"); !cs.Ready || !strings.HasPrefix(cs.ContainerID, "berth://") || cs.ImageID == "" {
		t.Errorf("main: ready %t, containerID %q, imageID %q", cs.Ready, cs.ContainerID, cs.ImageID)
	}
	if p.Status.PodIP == "" || !strings.HasPrefix(p.Status.PodIP, "10.124.") {
		t.Errorf("podIP %q, want one from berth's CNI network 10.124.x.0/24", p.Status.PodIP)
	}
	if c := podCondition(p, corev1.PodReady); c != corev1.ConditionTrue {
		t.Errorf("pod Ready condition %q", c)
	}
	e.waitLogs(t, "basic", "main", false, 30*time.Second, "hello-from-berth\nsecond-line\n")
	// ExecSync through the kubelet; the pod's hostname is its name.
	if out, err := e.run("basic", "main", "cat /etc/hostname"); err != nil || strings.TrimSpace(out) != "basic-"+nodeName {
		t.Errorf("/run cat /etc/hostname: %q, %v; want %q", out, err, "basic-"+nodeName)
	}
	// The image came from the in-test registry through registries.conf.
	if log := strings.Join(e.reg.RequestLog(), "\n"); !strings.Contains(log, "/v2/busybox/manifests/e2e") {
		t.Errorf("registry never served busybox:e2e; its requests:\n%s", log)
	}
}

// testRestart: a container exiting 3 is restarted, lastState has exit 3.
func testRestart(t *testing.T, e *env) {
	e.writeManifest(t, newPod("crash", ctr("main", "echo attempt; sleep 1; exit 3")))
	t.Cleanup(func() { e.removeManifest(t, "crash") })
	e.waitPod(t, "crash", 3*time.Minute, func(p *corev1.Pod) string {
		cs := cstatus(p, "main")
		if cs == nil || cs.RestartCount < 1 {
			return "no restart yet"
		}
		if term := cs.LastTerminationState.Terminated; term == nil || term.ExitCode != 3 || term.Reason != "Error" {
			return fmt.Sprintf("lastState %+v, want terminated exit 3 reason Error", cs.LastTerminationState)
		}
		return ""
	})
	e.waitLogs(t, "crash", "main", true, 30*time.Second, "attempt")
}

// testProbes: a failing exec liveness probe restarts the container; an
// exec readiness probe flips its readiness on and off.
func testProbes(t *testing.T, e *env) {
	live := ctr("live", "touch /tmp/healthy; echo live-start; sleep 6; rm /tmp/healthy; exec sleep 3600")
	live.LivenessProbe = execProbe("cat", "/tmp/healthy")
	live.LivenessProbe.FailureThreshold = 2
	ready := ctr("ready", "sleep 2; touch /tmp/ready; sleep 15; rm /tmp/ready; exec sleep 3600")
	ready.ReadinessProbe = execProbe("cat", "/tmp/ready")
	e.writeManifest(t, newPod("probes", live, ready))
	t.Cleanup(func() { e.removeManifest(t, "probes") })
	e.waitPod(t, "probes", 3*time.Minute, func(p *corev1.Pod) string {
		if cs := cstatus(p, "ready"); cs == nil || !cs.Ready || cs.State.Running == nil {
			return "ready container not ready"
		}
		return ""
	})
	e.waitPod(t, "probes", time.Minute, func(p *corev1.Pod) string {
		cs := cstatus(p, "ready")
		if cs.Ready || cs.State.Running == nil || cs.RestartCount != 0 {
			return fmt.Sprintf("ready container: ready %t, restarts %d", cs.Ready, cs.RestartCount)
		}
		if c := podCondition(p, corev1.PodReady); c != corev1.ConditionFalse {
			return fmt.Sprintf("pod Ready condition %q", c)
		}
		return ""
	})
	e.waitPod(t, "probes", 2*time.Minute, func(p *corev1.Pod) string {
		cs := cstatus(p, "live")
		if cs.RestartCount < 1 || cs.LastTerminationState.Terminated == nil {
			return fmt.Sprintf("live container: restarts %d, lastState %+v", cs.RestartCount, cs.LastTerminationState)
		}
		return ""
	})
	e.waitLogs(t, "probes", "live", true, 30*time.Second, "live-start")
}

func podCondition(p *corev1.Pod, typ corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return ""
}

// testHooks: postStart and preStop exec hooks run. Both write to the
// container's stdout (/proc/1/fd/1), so the kubelet's containerLogs shows
// them; a liveness failure triggers the preStop of the first instance.
func testHooks(t *testing.T, e *env) {
	c := ctr("hooked", "trap 'echo main-got-term; exit 0' TERM; echo main-started; touch /tmp/alive; "+
		"(sleep 8; rm -f /tmp/alive) & while true; do sleep 1; done")
	c.Lifecycle = &corev1.Lifecycle{
		PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "echo poststart-ran > /proc/1/fd/1"}}},
		PreStop:   &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "echo prestop-ran > /proc/1/fd/1"}}},
	}
	c.LivenessProbe = execProbe("cat", "/tmp/alive")
	c.LivenessProbe.InitialDelaySeconds = 3
	e.writeManifest(t, newPod("hooks", c))
	t.Cleanup(func() { e.removeManifest(t, "hooks") })
	e.waitPod(t, "hooks", 3*time.Minute, running("hooked"))
	e.waitLogs(t, "hooks", "hooked", false, 30*time.Second, "main-started", "poststart-ran")
	e.waitPod(t, "hooks", 2*time.Minute, func(p *corev1.Pod) string {
		if cs := cstatus(p, "hooked"); cs.RestartCount < 1 {
			return "no liveness restart yet"
		}
		return ""
	})
	e.waitLogs(t, "hooks", "hooked", true, 30*time.Second, "main-started", "poststart-ran", "prestop-ran", "main-got-term")
}

// testInit: an init container runs to completion before the main one.
func testInit(t *testing.T, e *env) {
	p := newPod("init", ctr("main", "cat /work/marker; echo main-after-init; exec sleep 3600"))
	initc := ctr("prepare", "sleep 2; echo init-done > /work/marker; echo init-log")
	p.Spec.InitContainers = []corev1.Container{initc}
	p.Spec.Volumes = []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	for _, c := range []*corev1.Container{&p.Spec.InitContainers[0], &p.Spec.Containers[0]} {
		c.VolumeMounts = []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}
	}
	e.writeManifest(t, p)
	t.Cleanup(func() { e.removeManifest(t, "init") })
	got := e.waitPod(t, "init", 3*time.Minute, func(p *corev1.Pod) string {
		ic := cstatus(p, "prepare")
		if ic == nil || ic.State.Terminated == nil || ic.State.Terminated.ExitCode != 0 || ic.State.Terminated.Reason != "Completed" {
			return "init container not completed"
		}
		return running("main")(p)
	})
	fin, start := cstatus(got, "prepare").State.Terminated.FinishedAt, cstatus(got, "main").State.Running.StartedAt
	if start.Before(&fin) {
		t.Errorf("main started at %v, before the init container finished at %v", start, fin)
	}
	e.waitLogs(t, "init", "main", false, 30*time.Second, "init-done\nmain-after-init")
	e.waitLogs(t, "init", "prepare", false, 30*time.Second, "init-log")
}

// testShared: two containers share an emptyDir and the pod's localhost.
func testShared(t *testing.T, e *env) {
	server := ctr("server", "echo shared-via-http > /data/index.html; echo from-server > /data/file; "+
		"exec busybox httpd -f -p 8080 -h /data")
	client := ctr("client", "until [ -f /data/file ]; do sleep 1; done; cat /data/file; "+
		"until wget -q -O - http://localhost:8080/index.html; do sleep 1; done; exec sleep 3600")
	p := newPod("shared", server, client)
	p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	for i := range p.Spec.Containers {
		p.Spec.Containers[i].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	}
	e.writeManifest(t, p)
	t.Cleanup(func() { e.removeManifest(t, "shared") })
	e.waitPod(t, "shared", 3*time.Minute, running("server", "client"))
	e.waitLogs(t, "shared", "client", false, time.Minute, "from-server", "shared-via-http")
}

// testHostNetwork: a hostNetwork pod serves on the host's 127.0.0.1.
func testHostNetwork(t *testing.T, e *env) {
	port := freePort(t)
	p := newPod("hostnet", ctr("web", fmt.Sprintf("exec busybox httpd -f -p 127.0.0.1:%d -h /www", port)))
	p.Spec.HostNetwork = true
	e.writeManifest(t, p)
	t.Cleanup(func() { e.removeManifest(t, "hostnet") })
	e.waitPod(t, "hostnet", 3*time.Minute, running("web"))
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/index.html", port), "hello from berth")
}

// testHostPort: a hostPort mapping reaches the pod from the host.
func testHostPort(t *testing.T, e *env) {
	port := freePort(t)
	c := ctr("web", "exec busybox httpd -f -p 8080 -h /www")
	c.Ports = []corev1.ContainerPort{{ContainerPort: 8080, HostPort: int32(port), Protocol: corev1.ProtocolTCP}}
	e.writeManifest(t, newPod("hostport", c))
	t.Cleanup(func() { e.removeManifest(t, "hostport") })
	e.waitPod(t, "hostport", 3*time.Minute, running("web"))
	// The host's own address first (the classic hostPort path), then
	// loopback (needs portmap's snat / route_localnet).
	if ip := hostIP(); ip != "" {
		waitHTTP(t, fmt.Sprintf("http://%s/index.html", net.JoinHostPort(ip, fmt.Sprint(port))), "hello from berth")
	}
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/index.html", port), "hello from berth")
}

// hostIP is the first global unicast IPv4 address outside berth's bridge.
func hostIP() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() && !strings.HasPrefix(n.IP.String(), "10.12") {
			return n.IP.String()
		}
	}
	return ""
}

func waitHTTP(t *testing.T, u, want string) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		b, err := httpGet(u)
		if err == nil && strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v %q, want %q", u, err, b, want)
		}
		time.Sleep(time.Second)
	}
}

// testOOM: a container allocating beyond its memory limit is OOMKilled.
func testOOM(t *testing.T, e *env) {
	c := ctr("hog", "echo allocating; exec tail /dev/zero")
	c.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")}
	p := newPod("oom", c)
	p.Spec.RestartPolicy = corev1.RestartPolicyNever
	e.writeManifest(t, p)
	t.Cleanup(func() { e.removeManifest(t, "oom") })
	e.waitPod(t, "oom", 3*time.Minute, func(p *corev1.Pod) string {
		cs := cstatus(p, "hog")
		if cs == nil || cs.State.Terminated == nil {
			return "not terminated"
		}
		if term := cs.State.Terminated; term.Reason != "OOMKilled" || term.ExitCode != 137 {
			return fmt.Sprintf("terminated reason %q exit %d, want OOMKilled 137", term.Reason, term.ExitCode)
		}
		if p.Status.Phase != corev1.PodFailed {
			return fmt.Sprintf("phase %q, want Failed", p.Status.Phase)
		}
		return ""
	})
}

// statsPod burns a little CPU and holds a little memory; testStats and
// testStatsCRI read it (its manifest stays until the removal scenario).
func statsPod() *corev1.Pod {
	return newPod("stats", ctr("busy", "x=$(head -c 4000000 /dev/zero | tr '\\0' x); "+
		"while true; do i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; sleep 1; done"))
}

// testStats: /stats/summary reports CPU and memory for the pod and its
// container (the kubelet's default stats provider).
func testStats(t *testing.T, e *env) {
	e.writeManifest(t, statsPod())
	e.waitPod(t, "stats", 3*time.Minute, running("busy"))
	e.waitStats(t, "stats", "busy")
}

// waitStats polls /stats/summary until pod name and its container have
// CPU (cumulative and rate) and memory (working set) figures.
func (e *env) waitStats(t *testing.T, name, container string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		s, raw, err := e.summary()
		why := "pod not in summary"
		if err != nil {
			why = err.Error()
		} else {
			for _, p := range s.Pods {
				if p.PodRef.Name != name+"-"+nodeName {
					continue
				}
				why = checkUsage("pod", p.CPU, p.Memory)
				found := false
				for _, c := range p.Containers {
					if c.Name == container {
						found = true
						if why == "" {
							why = checkUsage("container", c.CPU, c.Memory)
						}
					}
				}
				if !found && why == "" {
					why = "container not in summary"
				}
			}
		}
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats summary for %s: %s\n%s", name, why, raw)
		}
		time.Sleep(2 * time.Second)
	}
}

func checkUsage(what string, cpu *cpuStats, mem *memoryStats) string {
	switch {
	case cpu == nil || cpu.UsageCoreNanoSeconds == nil || *cpu.UsageCoreNanoSeconds == 0:
		return what + ": no cpu.usageCoreNanoSeconds"
	case cpu.UsageNanoCores == nil:
		return what + ": no cpu.usageNanoCores"
	case mem == nil || mem.WorkingSetBytes == nil || *mem.WorkingSetBytes == 0:
		return what + ": no memory.workingSetBytes"
	}
	return ""
}

// testNodeLimits: what the kubelet asks that this kind of node cannot
// fully honour must not break pods. A Guaranteed pod gets oom_score_adj
// -997 (needs CAP_SYS_RESOURCE, which the bounding set may lack), every
// container gets hugepage limits for the host's page sizes (there may be
// no hugetlb controller), and a privileged container asks for every
// capability the kubelet knows.
func testNodeLimits(t *testing.T, e *env) {
	guaranteed := ctr("guaranteed", "echo oom_score_adj=$(cat /proc/self/oom_score_adj); exec sleep 3600")
	rl := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}
	guaranteed.Resources = corev1.ResourceRequirements{Requests: rl, Limits: rl}
	privileged := ctr("privileged", "grep CapEff /proc/self/status; ls /dev/kmsg && echo devices-ok; exec sleep 3600")
	priv := true
	privileged.SecurityContext = &corev1.SecurityContext{Privileged: &priv}
	privileged.Resources = guaranteed.Resources
	e.writeManifest(t, newPod("nodelimits", guaranteed, privileged))
	t.Cleanup(func() { e.removeManifest(t, "nodelimits") })
	p := e.waitPod(t, "nodelimits", 3*time.Minute, running("guaranteed", "privileged"))
	if p.Status.QOSClass != corev1.PodQOSGuaranteed {
		t.Errorf("QoS class %q, want Guaranteed", p.Status.QOSClass)
	}
	out := e.waitLogs(t, "nodelimits", "guaranteed", false, 30*time.Second, "oom_score_adj=")
	t.Logf("guaranteed: %s", strings.TrimSpace(out))
	out = e.waitLogs(t, "nodelimits", "privileged", false, 30*time.Second, "CapEff", "devices-ok")
	t.Logf("privileged: %s", strings.TrimSpace(out))
}
