//go:build kubelet

package kubelet

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// testUserNamespace: a pod with hostUsers: false (UserNamespacesSupport
// is GA in 1.37) runs as root inside its user namespace, whose uid_map
// the kubelet chose (no "kubelet" user here, so from its default range
// at 65536), while its process on the host runs as that unprivileged uid.
func testUserNamespace(t *testing.T, e *env) {
	// The pod's root must pass through the directories above berthd's
	// run dir, as on a node (/run); the test daemon's dir is 0700.
	if err := os.Chmod(e.d.Dir, 0o711); err != nil {
		t.Fatal(err)
	}
	pod := newPod("userns", ctr("main", "exec sleep 3600"))
	hostUsers := false
	pod.Spec.HostUsers = &hostUsers
	e.writeManifest(t, pod)
	t.Cleanup(func() { e.removeManifest(t, "userns") })
	p := e.waitPod(t, "userns", 3*time.Minute, running("main"))
	if out, err := e.run("userns", "main", "id -u"); err != nil || strings.TrimSpace(out) != "0" {
		t.Errorf("id -u inside: %q, %v; want 0", out, err)
	}
	out, err := e.run("userns", "main", "cat /proc/self/uid_map")
	f := strings.Fields(out)
	if err != nil || len(f) != 3 || f[0] != "0" || f[1] == "0" || f[2] != "65536" {
		t.Fatalf("uid_map inside: %q, %v; want 0 <host id> 65536", out, err)
	}
	id := strings.TrimPrefix(cstatus(p, "main").ContainerID, "berth://")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := e.d.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(resp.GetInfo()["info"]), &info); err != nil || info.Pid == 0 {
		t.Fatalf("verbose info of %s: %v", id, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", info.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if uid := strings.Fields(line); len(uid) > 1 && uid[0] == "Uid:" {
			if uid[1] != f[1] {
				t.Errorf("the container's process runs as uid %s on the host, want the mapped %s", uid[1], f[1])
			}
		}
	}
}
