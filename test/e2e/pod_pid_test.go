package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestPodSharedPIDHolder: a pod with one PID namespace gets berth's own
// pause program as PID 1 there, run by conmon + runc from a rootfs berth
// made (no image pulled), inside the pod's network, IPC and UTS
// namespaces; stop and remove take it down without leftovers.
func TestPodSharedPIDHolder(t *testing.T) {
	d, tn := startNetDaemon(t, nil)
	before := snapshotHost(t, d, tn)
	cfg := podConfig("shared")
	cfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	start := time.Now()
	resp, err := d.Runtime.RunPodSandbox(ctxT(t, 30*time.Second), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	id := resp.GetPodSandboxId()
	t.Logf("pod with PID holder ready in %v", time.Since(start))
	st, info := podStatus(t, d, id)
	if st.GetLinux().GetNamespaces().GetOptions().GetPid() != runtimeapi.NamespaceMode_POD {
		t.Errorf("pid mode %v", st.GetLinux().GetNamespaces().GetOptions().GetPid())
	}
	pid := info.HolderPID
	if pid <= 0 || info.PIDNS != fmt.Sprintf("/proc/%d/ns/pid", pid) {
		t.Fatalf("holder: %+v", info)
	}
	status := readFile(t, fmt.Sprintf("/proc/%d/status", pid))
	if !strings.Contains(status, fmt.Sprintf("NSpid:\t%d\t1\n", pid)) {
		t.Errorf("holder is not PID 1 of its own namespace:\n%s", status)
	}
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); filepath.Base(exe) != "pause" {
		t.Errorf("holder runs %q", exe)
	}
	for kind, pinned := range map[string]string{"net": info.NetNS, "ipc": info.IPCNS, "uts": info.UTSNS} {
		if sameInode(t, pinned, fmt.Sprintf("/proc/%d/ns/%s", pid, kind)) == false {
			t.Errorf("holder is not in the pod's %s namespace", kind)
		}
	}
	// The holder reaps orphans: a process started in the PID namespace
	// shows up as a child of PID 1 there.
	out := run(t, "nsenter", "--pid="+info.PIDNS, "--", "/bin/busybox", "sh", "-c", "echo $$")
	if out == "" {
		t.Errorf("could not run in the pod's PID namespace")
	}
	stopPod(t, d, id)
	if syscall.Kill(pid, 0) == nil {
		time.Sleep(100 * time.Millisecond)
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("holder %d alive after stop", pid)
		}
	}
	_, info = podStatus(t, d, id)
	if info.HolderPID != 0 || info.PIDNS != "" {
		t.Errorf("after stop: %+v", info)
	}
	stopPod(t, d, id)
	removePod(t, d, id)
	if out, _ := exec.Command("runc", "--root", filepath.Join(d.Dir, "runc"), "list", "-q").Output(); strings.TrimSpace(string(out)) != "" {
		t.Errorf("runc still lists %q", out)
	}
	assertSameHost(t, before, snapshotHost(t, d, tn))
}

func sameInode(t *testing.T, a, b string) bool {
	t.Helper()
	var sa, sb syscall.Stat_t
	if err := syscall.Stat(a, &sa); err != nil {
		t.Fatalf("stat %s: %v", a, err)
	}
	if err := syscall.Stat(b, &sb); err != nil {
		t.Fatalf("stat %s: %v", b, err)
	}
	return sa.Ino == sb.Ino && sa.Dev == sb.Dev
}

// TestPodSharedPIDHolderDeath: when the holder (PID 1 of the pod's PID
// namespace) dies, the pod is reported not ready, and a stop and remove
// still release everything.
func TestPodSharedPIDHolderDeath(t *testing.T) {
	d, tn := startNetDaemon(t, nil)
	before := snapshotHost(t, d, tn)
	cfg := podConfig("holder-dies")
	cfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	id := runPod(t, d, cfg)
	_, info := podStatus(t, d, id)
	if info.HolderPID <= 0 {
		t.Fatalf("holder: %+v", info)
	}
	if err := syscall.Kill(info.HolderPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := podStatus(t, d, id)
		if st.GetState() == runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod still %v after its PID holder was killed", st.GetState())
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopPod(t, d, id)
	removePod(t, d, id)
	assertSameHost(t, before, snapshotHost(t, d, tn))
}
