package e2e

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/runtime"
)

// chaosDuration is how long the soak churns: BERTH_CHAOS_DURATION (a Go
// duration; `make chaos` sets 20m), 3 minutes by default.
func chaosDuration(t *testing.T) time.Duration {
	v := os.Getenv("BERTH_CHAOS_DURATION")
	if v == "" {
		return 3 * time.Minute
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("BERTH_CHAOS_DURATION %q: %v", v, err)
	}
	return d
}

// TestChaosSoak: 10 clients churn pods and containers (run, create,
// start, exec, stop, remove) while the driver SIGKILLs berthd every
// 10–40 s and starts it again as a supervisor would, kills random
// conmons and makes random containers allocate until their memory limit
// OOM-kills them. Afterwards every object a client was told exists
// exists, every container that was running and was not stopped by its
// client is running or reports the exit the driver caused, a counter
// container that ran throughout logged without a gap, and once
// everything is removed nothing is left: mounts, namespace pins, veths,
// IP allocations, iptables rules, records, storage containers, conmons,
// runc state and cgroups.
func TestChaosSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("the chaos soak takes minutes")
	}
	dur := chaosDuration(t)
	e := startRecEnv(t)
	removePod(t, e.d, e.pod)
	before := leftovers(t, e.d, e.tn)
	e.pod = runPod(t, e.d, e.podCfg)
	counter := e.run(t, e.config("counter", "sh", "-c", counterScript))
	logPath := e.status(t, counter).GetLogPath()

	ledger := newChaosLedger()
	rss := &rssWatch{}
	rss.sample(e.d.Cmd.Process.Pid)
	baseRSS := rss.peak

	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var clients sync.WaitGroup
	for i := range 10 {
		c, err := newChaosClient(i, e, ledger)
		if err != nil {
			t.Fatal(err)
		}
		clients.Add(1)
		go func() { defer clients.Done(); c.run(ctx) }()
	}

	kills, conmonKills, ooms := 0, 0, 0
	nextKill := time.Now().Add(time.Duration(10+rand.IntN(30)) * time.Second)
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
		rss.sample(e.d.Cmd.Process.Pid)
		switch {
		case ctx.Err() != nil:
		case time.Now().After(nextKill):
			e.d.Kill(t)
			time.Sleep(time.Duration(rand.IntN(1000)) * time.Millisecond)
			e.d.Start(t)
			kills++
			nextKill = time.Now().Add(time.Duration(10+rand.IntN(30)) * time.Second)
		case rand.IntN(6) == 0:
			if chaosKillConmon(t, e, ledger, counter) {
				conmonKills++
			}
		case rand.IntN(5) == 0:
			if chaosOOM(e, ledger) {
				ooms++
			}
		}
	}
	clients.Wait()
	// One last kill, so that the checks below read what a restarted
	// berthd recovered.
	e.d.Kill(t)
	e.d.Start(t)
	kills++
	time.Sleep(3 * time.Second) // OOM kills and conmon deaths land

	chaosCheckLedger(t, e, ledger)
	if st := e.status(t, counter); st.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("counter container after the soak: %v", st)
	}
	lines := assertNoGap(t, logPath)

	removeAllPods(e.d)
	e.checkConsistent(t)
	assertSameHost(t, before, leftovers(t, e.d, e.tn))
	for _, id := range ledger.ctrIDs() {
		if dirs := cgroupDirsOf(id); len(dirs) > 0 {
			t.Errorf("container %s left cgroups %q", id, dirs)
		}
	}
	rss.sample(e.d.Cmd.Process.Pid)
	final := rssKB(e.d.Cmd.Process.Pid)
	t.Logf("chaos soak %v: %d berthd SIGKILLs survived, %d conmons killed, %d containers OOM-killed; "+
		"%d pods and %d containers made, %d requests (%d retried while berthd was down), %d failures; "+
		"counter logged %d lines without a gap; berthd RSS baseline %d kB, peak %d kB, final %d kB",
		dur, kills, conmonKills, ooms, len(ledger.pods), len(ledger.ctrs), ledger.requests.Load(), ledger.retries.Load(),
		ledger.failures.Load(), lines, baseRSS, rss.peak, final)
	if n := ledger.failures.Load(); n > 0 {
		t.Errorf("%d requests failed with a non-transient error: %q", n, ledger.failureLog)
	}
	if final > baseRSS+10<<10 {
		t.Errorf("berthd RSS %d kB after the soak, baseline %d kB", final, baseRSS)
	}
}

// chaosKillConmon kills the conmon of a random running container a
// client is not stopping (never the counter's).
func chaosKillConmon(t *testing.T, e *recEnv, l *chaosLedger, counter string) bool {
	conmons := runtime.FindConmons(filepath.Join(e.d.Dir, "run", "exits"))
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range shuffled(l.ctrIDsLocked()) {
		c := l.ctrs[id]
		p, ok := conmons[id]
		if id == counter || !ok || !c.started || c.stopping || c.oomed || c.conmonKilled || l.removedCtrs[id] {
			continue
		}
		if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
			t.Logf("kill conmon of %s: %v", id, err)
			return false
		}
		c.conmonKilled = true
		return true
	}
	return false
}

// chaosOOM tells a random running oomable container to allocate without
// bound.
func chaosOOM(e *recEnv, l *chaosLedger) bool {
	l.mu.Lock()
	var pick string
	for _, id := range shuffled(l.ctrIDsLocked()) {
		c := l.ctrs[id]
		if c.oomable && c.started && !c.stopping && !c.oomed && !c.conmonKilled && !l.removedCtrs[id] {
			pick = id
			c.oomed = true
			break
		}
	}
	l.mu.Unlock()
	if pick == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := e.d.Runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: pick, Cmd: []string{"touch", "/tmp/oom"}, Timeout: 5})
	if err != nil || r.GetExitCode() != 0 {
		l.mu.Lock()
		l.ctrs[pick].oomed = false
		l.mu.Unlock()
		return false
	}
	return true
}

// chaosCheckLedger: every pod and container a client was told exists
// and did not remove exists; a started container its client was not
// stopping runs, or exited the way the driver made it.
func chaosCheckLedger(t *testing.T, e *recEnv, l *chaosLedger) {
	t.Helper()
	pods, err := e.d.Runtime.ListPodSandbox(ctxT(t, 10*time.Second), &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	havePods := map[string]bool{}
	for _, p := range pods.GetItems() {
		havePods[p.GetId()] = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, removed := range l.pods {
		if !removed && !havePods[id] {
			t.Errorf("pod %s was answered and never removed, but berthd does not list it", id)
		}
	}
	for _, id := range l.ctrIDsLocked() {
		c := l.ctrs[id]
		if l.removedCtrs[id] {
			continue
		}
		st, err := e.d.Runtime.ContainerStatus(ctxT(t, 10*time.Second), &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			t.Errorf("container %s was answered and never removed: %v", id, err)
			continue
		}
		s := st.GetStatus()
		if !c.started || c.stopping {
			continue
		}
		switch {
		case c.conmonKilled:
			if s.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || s.GetReason() == "" {
				t.Errorf("container %s lost its conmon: %v %q", id, s.GetState(), s.GetReason())
			}
		case c.oomed:
			if s.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || s.GetReason() != "OOMKilled" {
				t.Errorf("container %s was OOM-killed: %v %q exit %d", id, s.GetState(), s.GetReason(), s.GetExitCode())
			}
		default:
			if s.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
				t.Errorf("container %s should run: %v %q exit %d", id, s.GetState(), s.GetReason(), s.GetExitCode())
			}
		}
	}
}

func (l *chaosLedger) ctrIDs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ctrIDsLocked()
}

func (l *chaosLedger) ctrIDsLocked() []string {
	ids := make([]string, 0, len(l.ctrs))
	for id := range l.ctrs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func shuffled(ids []string) []string {
	rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	return ids
}

// cgroupDirsOf finds cgroup directories named after container id in any
// hierarchy, at any depth below berth's parents.
func cgroupDirsOf(id string) []string {
	var out []string
	for _, pattern := range []string{"/sys/fs/cgroup/*/*/*" + id + "*", "/sys/fs/cgroup/*/*/*/*" + id + "*", "/sys/fs/cgroup/*/*" + id + "*"} {
		m, _ := filepath.Glob(pattern)
		out = append(out, m...)
	}
	return out
}

// rssWatch keeps the peak RSS seen of berthd (across restarts).
type rssWatch struct{ peak int }

func (w *rssWatch) sample(pid int) {
	if kb := rssKB(pid); kb > w.peak {
		w.peak = kb
	}
}

// rssKB reads VmRSS of a process in kB (0 when gone).
func rssKB(pid int) int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}
