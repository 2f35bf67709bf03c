package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// fdNumbers parses `ls /proc/<pid>/fd` output into fd numbers.
func fdNumbers(out string) []string {
	f := strings.Fields(out)
	slices.Sort(f)
	return f
}

// TestHostileNoLeakedFds checks from inside that neither the container's
// process nor an exec'd one holds any fd but its stdio
// (CVE-2024-21626 class: a leaked fd of berthd, conmon or runc is a way
// onto the host), with and without a TTY.
func TestHostileNoLeakedFds(t *testing.T) {
	// berthd inherits an fd, as from a supervisor: none of the processes
	// it starts (conmon, runc, CNI plugins, the container) may hold it.
	inherited, err := os.CreateTemp("", "berth-inherited-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inherited.Close(); os.Remove(inherited.Name()) })
	// A CNI plugin that records its fds, then does loopback's work.
	plugins := t.TempDir()
	fdLog := filepath.Join(plugins, "fds.txt")
	loopback, err := exec.LookPath("/usr/lib/cni/loopback")
	if err != nil {
		loopback = "/opt/cni/bin/loopback"
	}
	recorder := fmt.Sprintf("#!/bin/sh\nls -l /proc/self/fd >> %s 2>&1\nexec %s\n", fdLog, loopback)
	if err := os.WriteFile(filepath.Join(plugins, "fdrecorder"), []byte(recorder), 0o755); err != nil {
		t.Fatal(err)
	}
	ctr := startCtrEnvWith(t, testutil.DaemonOptions{BinDir: binDir, ExtraFiles: []*os.File{inherited},
		DropIns: map[string]string{"50-plugins.toml": fmt.Sprintf("[berth.network]\nplugin_dirs = [%q, \"/usr/lib/cni\", \"/opt/cni/bin\"]\n", plugins)}})
	e := &hostileEnv{ctrEnv: ctr, guard: newHostGuard(t)}
	t.Run("CNI plugin", func(t *testing.T) {
		tn := newTestNet(t, e.d.Dir)
		writeConf(t, e.d, "05-fds.conflist", tn.conflist("bridge", `{"type": "fdrecorder"}`))
		eventually(t, "the recording network in use", func() bool {
			pod, err := e.d.Runtime.RunPodSandbox(ctxT(t, time.Minute), &runtimeapi.RunPodSandboxRequest{Config: podConfig("fds")})
			if err != nil {
				return false
			}
			stopPod(t, e.d, pod.GetPodSandboxId())
			removePod(t, e.d, pod.GetPodSandboxId())
			data, _ := os.ReadFile(fdLog)
			return len(data) > 0
		})
		os.Remove(filepath.Join(e.d.CNIDir, "05-fds.conflist"))
		if data := readFile(t, fdLog); strings.Contains(data, inherited.Name()) {
			t.Errorf("a CNI plugin got berthd's inherited fd:\n%s", data)
		}
	})
	// ls holds one fd of its own (3: the directory it reads).
	const probe = "ls /proc/self/fd; echo =SEP=; ls /proc/1/fd; echo =SEP=; ls -l /proc/1/fd /proc/self/fd"
	for _, tty := range []bool{false, true} {
		t.Run(fmt.Sprintf("tty=%v", tty), func(t *testing.T) {
			cfg := e.config(fmt.Sprintf("fds-%v", tty), "sh", "-c", probe+"; exec sleep 1000")
			cfg.Tty = tty
			id := e.run(t, cfg)
			var out string
			eventually(t, "the probe's output in the log", func() bool {
				data, _ := os.ReadFile(e.status(t, id).GetLogPath())
				out = string(data)
				return strings.Count(out, "=SEP=") == 2 && strings.Contains(out, "/proc/self/fd:")
			})
			checkFds(t, "container", logText(out))
			res := e.exec(t, id, 30, "sh", "-c", probe)
			checkFds(t, "exec", string(res.GetStdout()))
			for _, pid := range descendantsOf(e.d.Cmd.Process.Pid) {
				fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
				for _, fd := range fds {
					if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); target == inherited.Name() {
						comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
						t.Errorf("%s (pid %d) holds berthd's inherited fd as its fd %s", strings.TrimSpace(string(comm)), pid, fd.Name())
					}
				}
			}
			e.stop(t, id, 0)
			e.remove(t, id)
		})
	}
	e.guard.assertUntouched(t)
}

// logText strips the CRI log prefixes from a log file's lines.
func logText(data string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(data), "\n") {
		parts := strings.SplitN(l, " ", 4)
		if len(parts) == 4 {
			b.WriteString(strings.TrimRight(parts[3], "\r") + "\n")
		}
	}
	return b.String()
}

var fdLink = regexp.MustCompile(`(\d+) -> (.*)$`)

func checkFds(t *testing.T, who, out string) {
	t.Helper()
	parts := strings.SplitN(out, "=SEP=", 3)
	if len(parts) != 3 {
		t.Fatalf("%s: probe output %q", who, out)
	}
	if got := fdNumbers(parts[0]); !slices.Equal(got, []string{"0", "1", "2", "3"}) {
		t.Errorf("%s: an exec'd process holds fds %v, want only stdio and ls's own 3:\n%s", who, got, parts[2])
	}
	if got := fdNumbers(parts[1]); !slices.Equal(got, []string{"0", "1", "2"}) && !slices.Equal(got, []string{"0", "1", "2", "255"}) {
		t.Errorf("%s: the container's init holds fds %v, want only stdio:\n%s", who, got, parts[2])
	}
	for _, line := range strings.Split(parts[2], "\n") {
		m := fdLink.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		target := m[2]
		if strings.HasPrefix(target, "/") && !strings.HasPrefix(target, "/dev/") && !strings.HasPrefix(target, "/proc/") {
			t.Errorf("%s: fd %s points at %s", who, m[1], target)
		}
	}
}

// TestHostileCapabilities checks the inheritable and ambient sets are
// empty (CVE-2022-27652 class), for the container and for an exec, with
// capabilities added.
func TestHostileCapabilities(t *testing.T) {
	e := startHostileEnv(t)
	cfg := e.config("caps", "sh", "-c", "grep -E '^Cap(Inh|Amb)' /proc/self/status; exec sleep 1000")
	cfg.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
		Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"NET_ADMIN", "SYS_PTRACE"}},
	}}
	id := e.run(t, cfg)
	var out string
	eventually(t, "the capabilities in the log", func() bool {
		data, _ := os.ReadFile(e.status(t, id).GetLogPath())
		out = logText(string(data))
		return strings.Count(out, "Cap") == 2
	})
	res := e.exec(t, id, 30, "grep", "-E", "^Cap(Inh|Amb)", "/proc/self/status")
	for who, text := range map[string]string{"container": out, "exec": string(res.GetStdout())} {
		for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
			f := strings.Fields(line)
			if len(f) != 2 || strings.Trim(f[1], "0") != "" {
				t.Errorf("%s: %q, want an empty set", who, line)
			}
		}
	}
	e.stop(t, id, 0)
	e.remove(t, id)
	e.guard.assertUntouched(t)
}

// TestHostileNoAbstractSockets checks that neither berthd nor a conmon
// listens on an abstract unix socket (CVE-2020-15257 class): those are
// per network namespace, so a hostNetwork container could reach them.
// Its own view of the host's sockets is checked too.
func TestHostileNoAbstractSockets(t *testing.T) {
	e := startHostileEnv(t)
	podCfg := podConfig("hostnet")
	podCfg.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
	pod := runPod(t, e.d, podCfg)
	resp, err := e.d.Runtime.CreateContainer(ctxT(t, time.Minute), &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod, SandboxConfig: podCfg, Config: e.config("hostnet", "sleep", "1000")})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetContainerId()
	e.start(t, id)
	e.exec(t, id, 30, "true")
	// Abstract sockets' inodes in the host's network namespace.
	abstract := map[string]string{}
	for _, line := range strings.Split(readFile(t, "/proc/net/unix"), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 8 && strings.HasPrefix(f[7], "@") {
			abstract[f[6]] = f[7]
		}
	}
	for _, pid := range append([]int{e.d.Cmd.Process.Pid}, descendantsOf(e.d.Cmd.Process.Pid)...) {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			target, _ := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
			inode := strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")
			if name, ok := abstract[inode]; ok {
				comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
				t.Errorf("%s (pid %d) holds abstract socket %s", strings.TrimSpace(string(comm)), pid, name)
			}
		}
	}
	res := e.exec(t, id, 30, "sh", "-c", "grep -c -E '@.*(berth|conmon|runc)' /proc/net/unix; true")
	if n := strings.TrimSpace(string(res.GetStdout())); n != "0" {
		t.Errorf("the hostNetwork container sees %s berth, conmon or runc abstract sockets", n)
	}
	e.stop(t, id, 0)
	e.remove(t, id)
	stopPod(t, e.d, pod)
	removePod(t, e.d, pod)
	e.guard.assertUntouched(t)
}

// descendantsOf lists the processes below pid.
func descendantsOf(pid int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		p, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "stat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
		if len(f) > 1 {
			ppid, _ := strconv.Atoi(f[1])
			children[ppid] = append(children[ppid], p)
		}
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			out = append(out, c)
			walk(c)
		}
	}
	walk(pid)
	return out
}
