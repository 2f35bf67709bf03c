package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/idmap"
)

// usernsHost is the first host id of the test pods' user namespaces:
// inside the kubelet's default subordinate range (65536 and up).
const usernsHost = 65536 * 7

func usernsPodConfig(name string, uids, gids []*runtimeapi.IDMapping) *runtimeapi.PodSandboxConfig {
	pc := podConfig(name)
	pc.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{
		Mode: runtimeapi.NamespaceMode_POD, Uids: uids, Gids: gids,
	}
	return pc
}

func idMapping(host, ctr, n uint32) []*runtimeapi.IDMapping {
	return []*runtimeapi.IDMapping{{HostId: host, ContainerId: ctr, Length: n}}
}

// berthMounts counts the mount points under the test daemon's directory
// (its run dir, storage and namespace pins are all there).
func berthMounts(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(readFile(t, "/proc/self/mountinfo"), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir) {
			n++
		}
	}
	return n
}

// containerPID is the host pid of a container's process.
func (e *ctrEnv) containerPID(t *testing.T, id string) int {
	t.Helper()
	resp, err := e.d.Runtime.ContainerStatus(ctxT(t, 10*time.Second), &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(resp.GetInfo()["info"]), &info); err != nil || info.Pid == 0 {
		t.Fatalf("container %s verbose info: %v %q", id, err, resp.GetInfo()["info"])
	}
	return info.Pid
}

// hostUID is the real uid of host process pid.
func hostUID(t *testing.T, pid int) string {
	t.Helper()
	for _, line := range strings.Split(readFile(t, fmt.Sprintf("/proc/%d/status", pid)), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			return f[1]
		}
	}
	t.Fatalf("no Uid line for pid %d", pid)
	return ""
}

// A pod with hostUsers: false: its containers run as root inside a user
// namespace with the pod's mapping and as the mapped uid on the host, see
// their rootfs owned by root and a host directory with its host owners
// (idmapped mounts, nothing chowned), and leave no mount behind once
// removed, across a restart of berthd too.
func TestUserNamespacePod(t *testing.T) {
	e := startCtrEnv(t)
	st, err := e.d.Runtime.Status(ctxT(t, 30*time.Second), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range st.GetRuntimeHandlers() {
		if !h.GetFeatures().GetUserNamespaces() {
			t.Fatalf("handler %q does not advertise user_namespaces: %v", h.GetName(), h.GetFeatures())
		}
	}
	// The pod's root (a plain uid on the host) must be able to pass
	// through the directories above berth's run dir, as on a real node
	// (/run); the test daemon's temporary dir is 0700.
	if err := os.Chmod(e.d.Dir, 0o711); err != nil {
		t.Fatal(err)
	}
	// A container of a host-userns pod keeps its rootfs mounted under
	// storage's overlay home, which the userns pod's layers are idmapped
	// from (the home's own mount only: that overlay cannot be idmapped).
	e.run(t, e.config("plain", "sleep", "1000"))
	before := berthMounts(t, e.d.Dir)

	hostDir := t.TempDir()
	if err := os.Chmod(hostDir, 0o777); err != nil {
		t.Fatal(err)
	}
	owned := filepath.Join(hostDir, "owned")
	if err := os.WriteFile(owned, []byte("host data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(owned, 1234, 2345); err != nil {
		t.Fatal(err)
	}

	e.podCfg = usernsPodConfig("userns", idMapping(usernsHost, 0, 65536), idMapping(usernsHost, 0, 65536))
	e.podCfg.LogDirectory = e.logDir
	e.pod = runPod(t, e.d, e.podCfg)
	pst, _ := podStatus(t, e.d, e.pod)
	if u := pst.GetLinux().GetNamespaces().GetOptions().GetUsernsOptions(); u.GetMode() != runtimeapi.NamespaceMode_POD || u.GetUids()[0].GetHostId() != usernsHost {
		t.Fatalf("pod status userns options %v", u)
	}

	cfg := e.config("inside", "sleep", "1000")
	// With the pod's mappings on the mount, as the kubelet sends it.
	cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/host", HostPath: hostDir,
		UidMappings: idMapping(usernsHost, 0, 65536), GidMappings: idMapping(usernsHost, 0, 65536)}}
	c := e.run(t, cfg)
	out := func(cmd ...string) string {
		t.Helper()
		r := e.exec(t, c, 10, cmd...)
		if r.GetExitCode() != 0 {
			t.Fatalf("%v: exit %d: %s", cmd, r.GetExitCode(), r.GetStderr())
		}
		return strings.TrimSpace(string(r.GetStdout()))
	}
	if got := strings.Join(strings.Fields(out("cat", "/proc/self/uid_map")), " "); got != fmt.Sprintf("0 %d 65536", usernsHost) {
		t.Errorf("uid_map inside: %q", got)
	}
	if got := strings.Join(strings.Fields(out("cat", "/proc/self/gid_map")), " "); got != fmt.Sprintf("0 %d 65536", usernsHost) {
		t.Errorf("gid_map inside: %q", got)
	}
	if got := out("id", "-u"); got != "0" {
		t.Errorf("id -u inside: %s", got)
	}
	if got := hostUID(t, e.containerPID(t, c)); got != fmt.Sprint(usernsHost) {
		t.Errorf("the container's process runs as uid %s on the host, want %d", got, usernsHost)
	}
	if got := out("stat", "-c", "%u:%g", "/bin/busybox", "/etc"); got != "0:0\n0:0" {
		t.Errorf("rootfs owners inside: %q", got)
	}
	if got := out("stat", "-c", "%u:%g", "/host/owned"); got != "1234:2345" {
		t.Errorf("host file's owner inside: %s, want its host owner 1234:2345", got)
	}
	out("sh", "-c", "echo written > /host/new && echo layer > /written-in-rootfs && mkdir /var/newdir")
	stNew := statOwner(t, filepath.Join(hostDir, "new"))
	if stNew != "0:0" {
		t.Errorf("a file root made inside is owned by %s on the host, want 0:0 (the idmapped mount maps it back)", stNew)
	}
	if got := statOwner(t, owned); got != "1234:2345" {
		t.Errorf("host file now owned by %s: something chowned it", got)
	}

	// A container that fails after its idmapped mounts were made leaves
	// none of them.
	mid := berthMounts(t, e.d.Dir)
	bad := e.config("bad", "/no/such/binary")
	bad.Mounts = cfg.Mounts
	if id, err := e.create(t, bad); err == nil {
		if _, err := e.d.Runtime.StartContainer(ctxT(t, time.Minute), &runtimeapi.StartContainerRequest{ContainerId: id}); err == nil {
			t.Fatal("a container with a missing binary started")
		}
		e.remove(t, id)
	}
	if got := berthMounts(t, e.d.Dir); got != mid {
		t.Errorf("mounts after a failed container: %d, before it %d", got, mid)
	}
	// A container asking for its own user namespace is refused, with
	// nothing made.
	own := e.config("own", "true")
	own.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}}}}
	_, err = e.create(t, own)
	wantCode(t, err, codes.InvalidArgument, "userns_options")
	other := e.config("other", "true")
	other.Mounts = []*runtimeapi.Mount{{ContainerPath: "/host", HostPath: hostDir,
		UidMappings: idMapping(usernsHost*3, 0, 65536), GidMappings: idMapping(usernsHost*3, 0, 65536)}}
	_, err = e.create(t, other)
	wantCode(t, err, codes.InvalidArgument, "differ from the pod's user namespace mappings")
	if got := berthMounts(t, e.d.Dir); got != mid {
		t.Errorf("mounts after a refused container: %d, before it %d", got, mid)
	}

	// The idmapped mounts outlive berthd; the restarted one releases them
	// at removal.
	e.d.Restart(t)
	if got := out("cat", "/written-in-rootfs"); got != "layer" {
		t.Errorf("after a restart: %q", got)
	}
	stopPod(t, e.d, e.pod)
	removePod(t, e.d, e.pod)
	if got := berthMounts(t, e.d.Dir); got != before {
		t.Errorf("mounts under the daemon dir: %d before the pod, %d after its removal", before, got)
	}
}

func statOwner(t *testing.T, p string) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
}

// Every bad userns_options is refused with InvalidArgument naming the
// field, before anything is made.
func TestUserNamespaceRefusals(t *testing.T) {
	e := startCtrEnv(t)
	before := berthMounts(t, e.d.Dir)
	good := idMapping(usernsHost, 0, 65536)
	for name, tc := range map[string]struct {
		pc   *runtimeapi.PodSandboxConfig
		want string
	}{
		"CONTAINER mode": {func() *runtimeapi.PodSandboxConfig {
			pc := usernsPodConfig("r1", good, good)
			pc.Linux.SecurityContext.NamespaceOptions.UsernsOptions.Mode = runtimeapi.NamespaceMode_CONTAINER
			return pc
		}(), "userns_options.mode CONTAINER"},
		"TARGET mode": {func() *runtimeapi.PodSandboxConfig {
			pc := usernsPodConfig("r2", good, good)
			pc.Linux.SecurityContext.NamespaceOptions.UsernsOptions.Mode = runtimeapi.NamespaceMode_TARGET
			return pc
		}(), "userns_options.mode TARGET"},
		"host network": {func() *runtimeapi.PodSandboxConfig {
			pc := usernsPodConfig("r3", good, good)
			pc.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
			return pc
		}(), "host's network namespace"},
		"two mappings":  {usernsPodConfig("r4", append(idMapping(usernsHost, 0, 100), idMapping(usernsHost+1000, 100, 100)...), good), "uids: exactly one mapping"},
		"no gids":       {usernsPodConfig("r5", good, nil), "gids: exactly one mapping"},
		"zero length":   {usernsPodConfig("r6", idMapping(usernsHost, 0, 0), good), "uids[0]: length is 0"},
		"overlap":       {usernsPodConfig("r7", good, append(idMapping(usernsHost, 0, 100), idMapping(usernsHost+50, 100, 100)...)), "gids[0] and [1]: host ranges overlap"},
		"beyond 2^32":   {usernsPodConfig("r8", idMapping(1<<32-1000, 0, 65536), good), "beyond 2^32-1"},
		"host root":     {usernsPodConfig("r9", idMapping(0, 0, 65536), good), "outside the host's subordinate ids"},
		"root unmapped": {usernsPodConfig("r10", idMapping(usernsHost, 1, 65536), good), "container id 0 must be mapped"},
	} {
		_, err := e.d.Runtime.RunPodSandbox(ctxT(t, 30*time.Second), &runtimeapi.RunPodSandboxRequest{Config: tc.pc})
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		wantCode(t, err, codes.InvalidArgument, tc.want)
		if !strings.Contains(err.Error(), "linux.security_context.namespace_options.userns_options") {
			t.Errorf("%s: %v does not name the field", name, err)
		}
	}
	pods, err := e.d.Runtime.ListPodSandbox(ctxT(t, 10*time.Second), &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.GetItems()) != 1 {
		t.Errorf("%d pods after the refusals, want only the env's", len(pods.GetItems()))
	}
	if got := berthMounts(t, e.d.Dir); got != before {
		t.Errorf("mounts: %d before the refusals, %d after", before, got)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.d.Dir, "run", "ns", "user")); len(ents) != 0 {
		t.Errorf("user namespace pins left: %v", ents)
	}
}

// A pod sharing one PID namespace in its own user namespace: its holder
// joins the user namespace, so the containers can mount their /proc. And
// after a crash of berthd, idmapped mounts that no container owns (left
// by a creation the crash cut short) are swept at the next start, while
// a live container's stay.
func TestUserNamespaceSharedPIDAndSweep(t *testing.T) {
	e := startCtrEnv(t)
	if err := os.Chmod(e.d.Dir, 0o711); err != nil {
		t.Fatal(err)
	}
	before := berthMounts(t, e.d.Dir)
	e.podCfg = usernsPodConfig("usernspid", idMapping(usernsHost*2, 0, 65536), idMapping(usernsHost*2, 0, 65536))
	e.podCfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	e.podCfg.LogDirectory = e.logDir
	e.pod = runPod(t, e.d, e.podCfg)
	c := e.run(t, e.config("top", "sleep", "1000"))
	r := e.exec(t, c, 10, "sh", "-c", "cat /proc/1/comm; id -u")
	if got := strings.Fields(string(r.GetStdout())); r.GetExitCode() != 0 || len(got) != 2 || got[0] != "pause" || got[1] != "0" {
		t.Fatalf("PID 1 and id inside: %q %q", r.GetStdout(), r.GetStderr())
	}

	e.d.Kill(t)
	orphan := filepath.Join(e.d.Dir, "run", "idmap", strings.Repeat("ab", 32))
	src := t.TempDir()
	if err := idmap.Mount(src, filepath.Join(orphan, "m0"), filepath.Join(e.d.Dir, "run", "ns", "user", e.pod)); err != nil {
		t.Fatal(err)
	}
	e.d.Start(t)
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("orphan idmapped mounts not swept: %v", err)
	}
	if r := e.exec(t, c, 10, "id", "-u"); strings.TrimSpace(string(r.GetStdout())) != "0" {
		t.Errorf("after the restart: %q %q", r.GetStdout(), r.GetStderr())
	}
	stopPod(t, e.d, e.pod)
	removePod(t, e.d, e.pod)
	if got := berthMounts(t, e.d.Dir); got != before {
		t.Errorf("mounts under the daemon dir: %d before the pod, %d after its removal", before, got)
	}
}

// An image volume of a pod in a user namespace is a read-only overlay of
// the image's layers through the pod's mapping: its files are root's
// inside, a sub path selects a directory, and nothing stays mounted.
func TestUserNamespaceImageVolume(t *testing.T) {
	e := startVolEnv(t)
	if err := os.Chmod(e.d.Dir, 0o711); err != nil {
		t.Fatal(err)
	}
	before := berthMounts(t, e.d.Dir)
	e.podCfg = usernsPodConfig("usernsvol", idMapping(usernsHost, 0, 65536), idMapping(usernsHost, 0, 65536))
	e.podCfg.LogDirectory = e.logDir
	e.pod = runPod(t, e.d, e.podCfg)
	cfg := e.config("vol", "sleep", "1000")
	cfg.Mounts = []*runtimeapi.Mount{imageMount("/vol", e.volID, ""), imageMount("/inner", e.volRef, "data/sub")}
	c := e.run(t, cfg)
	r := e.exec(t, c, 10, "sh", "-c", "stat -c %u:%g /vol/data/hello.txt; cat /vol/data/hello.txt /inner/inner.txt; touch /vol/x")
	if got := string(r.GetStdout()); got != "0:0\nhello from the image\ninner\n" || r.GetExitCode() == 0 {
		t.Errorf("image volume inside: %q %q exit %d (want root's files, read-only)", got, r.GetStderr(), r.GetExitCode())
	}
	stopPod(t, e.d, e.pod)
	removePod(t, e.d, e.pod)
	if got := berthMounts(t, e.d.Dir); got != before {
		t.Errorf("mounts under the daemon dir: %d before the pod, %d after its removal", before, got)
	}
}
