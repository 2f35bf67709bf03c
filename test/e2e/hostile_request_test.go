package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestHostilePodRequests sends RunPodSandbox requests that try to reach
// the host: sysctls smuggling a second sysctl (CVE-2022-0811 class),
// behaviour annotations the handler does not allow (CVE-2024-3154 class:
// pods and containers share one rule), log directories climbing out.
// Each is refused with InvalidArgument, and the host is as it was.
func TestHostilePodRequests(t *testing.T) {
	e := startHostileEnv(t)
	core := readFile(t, "/proc/sys/kernel/core_pattern")
	smuggled := "|/bin/sh -c " + e.guard.marker
	for _, tc := range []struct {
		name   string
		mutate func(*runtimeapi.PodSandboxConfig)
		want   string
	}{
		{"sysctl value smuggling core_pattern", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Sysctls = map[string]string{"kernel.shm_rmid_forced": "1+kernel.core_pattern=" + smuggled}
		}, "kernel.shm_rmid_forced"},
		{"sysctl key smuggling core_pattern", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Sysctls = map[string]string{"kernel.shm_rmid_forced=1+kernel.core_pattern": smuggled}
		}, "key"},
		{"sysctl value with a newline", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Sysctls = map[string]string{"kernel.shm_rmid_forced": "1\nkernel.core_pattern=" + smuggled}
		}, "kernel.shm_rmid_forced"},
		{"host-wide sysctl", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Sysctls = map[string]string{"kernel.core_pattern": "core"}
		}, "not a namespaced sysctl"},
		{"berth behaviour annotation", func(c *runtimeapi.PodSandboxConfig) {
			c.Annotations = map[string]string{"io.berth.unsafe": "1"}
		}, "not allowed for runtime handler"},
		{"CRI-O behaviour annotation", func(c *runtimeapi.PodSandboxConfig) {
			c.Annotations = map[string]string{"io.kubernetes.cri-o.Devices": "/dev/sda"}
		}, "not allowed for runtime handler"},
		{"crun behaviour annotation", func(c *runtimeapi.PodSandboxConfig) {
			c.Annotations = map[string]string{"run.oci.keep_original_groups": "1"}
		}, "not allowed for runtime handler"},
		{"log directory with ..", func(c *runtimeapi.PodSandboxConfig) {
			c.LogDirectory = filepath.Join(e.d.Dir, "podlogs") + "/../../../" + strings.TrimPrefix(e.guard.victim, "/")
		}, "log_directory"},
		{"relative log directory", func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = "logs" }, "log_directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := podConfig("hostile")
			tc.mutate(cfg)
			_, err := e.d.Runtime.RunPodSandbox(ctxT(t, time.Minute), &runtimeapi.RunPodSandboxRequest{Config: cfg})
			expectCode(t, err, codes.InvalidArgument, tc.want)
			e.guard.assertUntouched(t)
		})
	}
	if now := readFile(t, "/proc/sys/kernel/core_pattern"); now != core {
		t.Errorf("core_pattern changed: %q -> %q", core, now)
	}
	pods, err := e.d.Runtime.ListPodSandbox(ctxT(t, time.Minute), &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(pods.GetItems()) != 1 {
		t.Errorf("pods after the refused requests: %v, %v", pods.GetItems(), err)
	}
}

// TestHostileContainerRequests sends CreateContainer requests that try
// to reach the host or change how berth runs the container. Each is
// refused with InvalidArgument, leaves no container, layer or file.
func TestHostileContainerRequests(t *testing.T) {
	e := startHostileEnv(t)
	victim := e.guard.victim
	link := filepath.Join(victim, "link")
	if err := os.Symlink("/", link); err != nil {
		t.Fatal(err)
	}
	e.guard.before = e.guard.view(t)
	sc := func(f func(*runtimeapi.LinuxContainerSecurityContext)) func(*runtimeapi.ContainerConfig) {
		return func(c *runtimeapi.ContainerConfig) {
			c.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{}}
			f(c.Linux.SecurityContext)
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*runtimeapi.ContainerConfig)
		want   string
	}{
		{"working dir /proc/self/fd/N", func(c *runtimeapi.ContainerConfig) { c.WorkingDir = "/proc/self/fd/5" }, "/proc"},
		{"working dir /proc/1/cwd", func(c *runtimeapi.ContainerConfig) { c.WorkingDir = "/proc/1/cwd" }, "/proc"},
		{"HOME with a newline", func(c *runtimeapi.ContainerConfig) {
			c.Envs = []*runtimeapi.KeyValue{{Key: "HOME", Value: []byte("/root\nevil:x:0:0::/:/bin/sh")}}
		}, "newline"},
		{"env name with a newline", func(c *runtimeapi.ContainerConfig) {
			c.Envs = []*runtimeapi.KeyValue{{Key: "A\nLD_PRELOAD", Value: []byte("/tmp/evil.so")}}
		}, "newline"},
		{"uid above 2^31-1", sc(func(s *runtimeapi.LinuxContainerSecurityContext) {
			s.RunAsUser = &runtimeapi.Int64Value{Value: 1<<32 - 2}
		}), "run_as_user"},
		{"gid above 2^31-1", sc(func(s *runtimeapi.LinuxContainerSecurityContext) {
			s.RunAsUser = &runtimeapi.Int64Value{Value: 1000}
			s.RunAsGroup = &runtimeapi.Int64Value{Value: 1 << 31}
		}), "run_as_group"},
		{"supplementary gid above 2^31-1", sc(func(s *runtimeapi.LinuxContainerSecurityContext) {
			s.SupplementalGroups = []int64{1 << 31}
		}), "2147483648"},
		{"berth behaviour annotation", func(c *runtimeapi.ContainerConfig) {
			c.Annotations = map[string]string{"io.berth.unsafe": "1"}
		}, "not allowed for runtime handler"},
		{"CRI-O behaviour annotation", func(c *runtimeapi.ContainerConfig) {
			c.Annotations = map[string]string{"io.kubernetes.cri-o.Devices": "/dev/sda"}
		}, "not allowed for runtime handler"},
		{"crun behaviour annotation", func(c *runtimeapi.ContainerConfig) {
			c.Annotations = map[string]string{"run.oci.keep_original_groups": "1"}
		}, "not allowed for runtime handler"},
		{"log path with ..", func(c *runtimeapi.ContainerConfig) {
			c.LogPath = "../../../../../../" + strings.TrimPrefix(victim, "/") + "/x.log"
		}, "outside"},
		{"absolute log path elsewhere", func(c *runtimeapi.ContainerConfig) { c.LogPath = victim + "/x.log" }, "outside"},
		{"container path with ..", func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/mnt/../../etc", HostPath: victim}}
		}, ".."},
		{"host path with ..", func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/mnt", HostPath: victim + "/../../etc"}}
		}, ".."},
		{"relative host path", func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/mnt", HostPath: "etc"}}
		}, "absolute"},
		{"device outside /dev", func(c *runtimeapi.ContainerConfig) {
			c.Devices = []*runtimeapi.Device{{HostPath: victim + "/canary", ContainerPath: "/dev/x", Permissions: "rwm"}}
		}, "not a device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.config("hostile", "sh", "-c", "echo "+e.guard.marker+" > /escaped")
			tc.mutate(cfg)
			id, err := e.create(t, cfg)
			if err == nil {
				e.remove(t, id)
			}
			expectCode(t, err, codes.InvalidArgument, tc.want)
			e.guard.assertUntouched(t)
		})
	}
	assertNoContainersLeft(t, e.ctrEnv)
	assertStorageEmpty(t, e.ctrEnv)
	// A symlink as a mount source is followed once, at creation, as a
	// Kubernetes hostPath is: the container gets what it pointed to then.
	t.Run("mount source that is a symlink", func(t *testing.T) {
		dir := filepath.Join(victim, "dir")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "inside"), []byte("mounted\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		dirLink := filepath.Join(victim, "dirlink")
		if err := os.Symlink(dir, dirLink); err != nil {
			t.Fatal(err)
		}
		cfg := e.config("symsrc", "cat", "/mnt/inside")
		cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/mnt", HostPath: dirLink, Readonly: true}}
		id := e.mustCreate(t, cfg)
		// Swapped for a link to / after the check: the mount is made.
		if err := os.Remove(dirLink); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/", dirLink); err != nil {
			t.Fatal(err)
		}
		e.start(t, id)
		st := e.waitExited(t, id, time.Minute)
		lines := logLines(t, st.GetLogPath())
		e.remove(t, id)
		if len(lines) != 1 || !strings.HasSuffix(lines[0], "mounted") {
			t.Errorf("the container saw %q through the swapped link, want the directory it named at creation", lines)
		}
		os.Remove(dirLink)
		os.RemoveAll(dir)
		e.guard.assertUntouched(t)
	})
	if _, err := os.Stat(filepath.Join(victim, "x.log")); err == nil {
		t.Error("a container log was written outside the pod's log directory")
	}
}
