//go:build kubelet

package kubelet

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestKubelet runs every scenario against one berthd and one kubelet (with
// baseGates): the independent ones in parallel, then berthd SIGKILL, the CRI stats
// provider (a kubelet restart with PodAndContainerStatsFromCRI), in-place
// resize (a kubelet restart with QoS cgroups) and manifest removal, in
// that order.
func TestKubelet(t *testing.T) {
	start := time.Now()
	t.Cleanup(func() { printResults(time.Since(start)) })
	e := startEnv(t)
	t.Logf("berthd dir %s, kubelet dir %s", e.d.Dir, e.dir)
	t.Run("parallel", func(t *testing.T) {
		for _, s := range []struct {
			name string
			fn   func(*testing.T, *env)
		}{
			{"static-pod-logs", testBasic},
			{"restart-nonzero-exit", testRestart},
			{"probes", testProbes},
			{"hooks", testHooks},
			{"init-container", testInit},
			{"shared-emptydir-localhost", testShared},
			{"host-network", testHostNetwork},
			{"host-port", testHostPort},
			{"oom-killed", testOOM},
			{"stats-cadvisor", testStats},
			{"log-rotation", testLogRotation},
			{"node-limits", testNodeLimits},
			{"list-streams", testListStreams},
			{"evented-pleg-exit", testEventedExit},
			{"cdi-device", testCDI},
			{"image-volume", testImageVolume},
			{"supplemental-groups-policy", testSupplementalGroupsPolicy},
		} {
			t.Run(s.name, func(t *testing.T) {
				t.Parallel()
				scenario(t)
				s.fn(t, e)
			})
		}
	})
	t.Run("berthd-sigkill", func(t *testing.T) { scenario(t); testBerthdKill(t, e) })
	t.Run("stats-cri", func(t *testing.T) {
		scenario(t)
		before, _ := e.pod("stats")
		e.stopKubelet(t)
		e.startKubelet(t, withGates(map[string]bool{"PodAndContainerStatsFromCRI": true}))
		e.writeManifest(t, statsPod()) // in case stats-cadvisor failed early
		after := e.waitPod(t, "stats", 3*time.Minute, running("busy"))
		e.waitStats(t, "stats", "busy")
		// /metrics/cadvisor now comes from ListPodSandboxMetrics: the
		// cAdvisor families, for the busy container's id.
		e.waitCAdvisorFamilies(t, cstatus(after, "busy").ContainerID)
		// ... read through the stats streams (CRIListStreaming).
		if fams, err := e.berthMetrics(); err != nil {
			t.Error(err)
		} else if n := opCount(fams, "StreamPodSandboxStats"); n == 0 || opCount(fams, "ListPodSandboxStats") != 0 {
			t.Errorf("pod stats: %v StreamPodSandboxStats, %v unary ListPodSandboxStats; want the stream only", n, opCount(fams, "ListPodSandboxStats"))
		}
		// The restarted kubelet adopted the running container.
		if before != nil {
			if b, a := cstatus(before, "busy"), cstatus(after, "busy"); b == nil || a.ContainerID != b.ContainerID || a.RestartCount != 0 {
				t.Errorf("after the kubelet restart: container %s restarts %d, was %v", a.ContainerID, a.RestartCount, b)
			}
		}
	})
	// In-place resize needs the kubelet's pod cgroups (cgroupsPerQOS):
	// without them the 1.37 kubelet's resize dereferences the nil pod
	// cgroup config of its no-op pod cgroup manager and crashes.
	t.Run("resize-in-place", func(t *testing.T) {
		scenario(t)
		e.stopKubelet(t)
		e.useQoSCgroups(t)
		e.startKubelet(t, withGates(map[string]bool{"PodAndContainerStatsFromCRI": true}))
		testResize(t, e)
	})
	t.Run("manifest-removal", func(t *testing.T) { scenario(t); testRemoval(t, e) })
}

// testLogRotation: with containerLogMaxSize 16Ki the kubelet rotates a
// chatty container's log (rename + ReopenContainerLog) several times, and
// the rotated files plus the current one hold every line exactly once.
func testLogRotation(t *testing.T, e *env) {
	const lines = 6000
	e.writeManifest(t, newPod("chatty", ctr("chatty", fmt.Sprintf(
		"i=0; while [ $i -lt %d ]; do i=$((i+1)); echo \"line $i padding-padding-padding\"; "+
			"if [ $((i %% 100)) -eq 0 ]; then sleep 0.3; fi; done; echo done-marker; exec sleep 3600", lines))))
	t.Cleanup(func() { e.removeManifest(t, "chatty") })
	e.waitPod(t, "chatty", 3*time.Minute, running("chatty"))
	pattern := filepath.Join(e.podLogs, "default_chatty-"+nodeName+"_*", "chatty", "0.log*")
	deadline := time.Now().Add(3 * time.Minute)
	var msgs []string
	var files []string
	for {
		var err error
		files, msgs, err = readRotatedLogs(pattern)
		if err == nil && len(msgs) > 0 && msgs[len(msgs)-1] == "done-marker" {
			// Let one more rotation check pass, then read a settled set.
			time.Sleep(5 * time.Second)
			if files, msgs, err = readRotatedLogs(pattern); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no done-marker in %s after 3m (err %v, %d lines, files %v)", pattern, err, len(msgs), files)
		}
		time.Sleep(2 * time.Second)
	}
	if len(files) < 3 {
		t.Errorf("log files %v: want at least two rotations", files)
	}
	next := 1
	for _, m := range msgs {
		if m == "done-marker" {
			break
		}
		want := fmt.Sprintf("line %d padding-padding-padding", next)
		if m != want {
			t.Fatalf("after %d good lines got %q, want %q (files %v)", next-1, m, want, files)
		}
		next++
	}
	if next != lines+1 {
		t.Errorf("got %d of %d lines (files %v)", next-1, lines, files)
	}
	if bad := e.kubeletLogGrep("Failed to rotate log", "Failed to reopen"); len(bad) > 0 {
		t.Errorf("kubelet logged rotation failures:\n%s", strings.Join(bad, "\n"))
	}
	t.Logf("%d lines in %d files: %v", next-1, len(files), files)
	// The kubelet still serves the current file.
	if _, err := e.logs("chatty", "chatty", false); err != nil {
		t.Errorf("containerLogs after rotation: %v", err)
	}
}

// readRotatedLogs reads 0.log.<timestamp>[.gz] in timestamp order, then
// 0.log, and returns the CRI log messages joined across partial lines.
func readRotatedLogs(pattern string) ([]string, []string, error) {
	matches, err := filepath.Glob(pattern)
	if err != nil {
		return nil, nil, err
	}
	var files []string
	for _, m := range matches {
		if !strings.HasSuffix(m, ".tmp") && !strings.HasSuffix(m, "/0.log") {
			files = append(files, m)
		}
	}
	sort.Slice(files, func(i, j int) bool {
		return strings.TrimSuffix(files[i], ".gz") < strings.TrimSuffix(files[j], ".gz")
	})
	for _, m := range matches {
		if strings.HasSuffix(m, "/0.log") {
			files = append(files, m)
		}
	}
	var msgs []string
	partial := ""
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return files, nil, err
		}
		if strings.HasSuffix(f, ".gz") {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				return files, nil, fmt.Errorf("%s: %w", f, err)
			}
			if b, err = io.ReadAll(zr); err != nil {
				return files, nil, fmt.Errorf("%s: %w", f, err)
			}
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			// <RFC3339Nano> <stream> <P|F> <message>
			parts := strings.SplitN(sc.Text(), " ", 4)
			if len(parts) < 3 {
				return files, nil, fmt.Errorf("%s: malformed CRI log line %q", f, sc.Text())
			}
			msg := ""
			if len(parts) == 4 {
				msg = parts[3]
			}
			partial += msg
			if parts[2] == "F" {
				msgs = append(msgs, partial)
				partial = ""
			}
		}
	}
	return files, msgs, nil
}

// testBerthdKill: berthd is SIGKILLed and restarted while the kubelet runs;
// the pod keeps running, its containers are neither restarted nor
// replaced, and their logs keep flowing (conmon holds them).
func testBerthdKill(t *testing.T, e *env) {
	a := ctr("ticker", "echo ticker-started; while true; do echo tick-$(date +%s); sleep 1; done")
	a.ReadinessProbe = execProbe("true")
	p := newPod("survivor", a, ctr("sleeper", "exec sleep 3600"))
	e.writeManifest(t, p)
	t.Cleanup(func() { e.removeManifest(t, "survivor") })
	before := e.waitPod(t, "survivor", 3*time.Minute, running("ticker", "sleeper"))
	e.waitPod(t, "survivor", time.Minute, func(p *corev1.Pod) string {
		if !cstatus(p, "ticker").Ready {
			return "ticker not ready"
		}
		return ""
	})
	ids := map[string]string{}
	for _, c := range []string{"ticker", "sleeper"} {
		ids[c] = cstatus(before, c).ContainerID
	}
	e.d.Kill(t)
	killedAt := time.Now()
	time.Sleep(10 * time.Second)
	e.d.Start(t)
	t.Logf("berthd back after %v", time.Since(killedAt).Round(time.Second))
	stable := func(p *corev1.Pod) string {
		for c, id := range ids {
			cs := cstatus(p, c)
			if cs.ContainerID != id || cs.RestartCount != 0 || cs.State.Running == nil {
				return fmt.Sprintf("%s: id %s (was %s), restarts %d, state %+v", c, cs.ContainerID, id, cs.RestartCount, cs.State)
			}
		}
		return ""
	}
	// Readiness comes back once exec works again.
	e.waitPod(t, "survivor", 2*time.Minute, func(p *corev1.Pod) string {
		if why := stable(p); why != "" {
			return "UNSTABLE " + why
		}
		if !cstatus(p, "ticker").Ready {
			return "ticker not ready again"
		}
		return ""
	})
	// ... and stays so through a few kubelet syncs.
	for end := time.Now().Add(25 * time.Second); time.Now().Before(end); time.Sleep(time.Second) {
		p, err := e.pod("survivor")
		if err != nil || p == nil {
			t.Fatalf("survivor: %v %v", p, err)
		}
		if why := stable(p); why != "" {
			t.Fatalf("after berthd restart: %s", why)
		}
	}
	// Logs written while berthd was down are there.
	out := e.waitLogs(t, "survivor", "ticker", false, 30*time.Second, "ticker-started")
	gap := 0
	for _, l := range strings.Split(out, "\n") {
		if ts, err := strconv.ParseInt(strings.TrimPrefix(l, "tick-"), 10, 64); err == nil &&
			ts > killedAt.Unix()+1 && ts < killedAt.Unix()+9 {
			gap++
		}
	}
	if gap < 4 {
		t.Errorf("only %d ticks logged while berthd was down, want ~8:\n%s", gap, out)
	}
}
