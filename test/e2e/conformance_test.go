package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// TestCRISemantics checks the CRI rules issue 15 found berth breaking,
// on one pod: an idempotent stop, the seccomp defaults, RunAsGroup
// without a user, and the supplemental groups policies.
func TestCRISemantics(t *testing.T) {
	e := startCtrEnv(t)
	sc := func(cfg *runtimeapi.ContainerConfig) *runtimeapi.LinuxContainerSecurityContext {
		if cfg.Linux == nil {
			cfg.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{}}
		}
		return cfg.Linux.SecurityContext
	}
	// output runs cfg to its exit and returns its stdout lines.
	output := func(t *testing.T, cfg *runtimeapi.ContainerConfig) (string, *runtimeapi.ContainerStatus) {
		t.Helper()
		id := e.run(t, cfg)
		st := e.waitExited(t, id, 10*time.Second)
		var lines []string
		for _, l := range logLines(t, st.GetLogPath()) {
			lines = append(lines, strings.TrimPrefix(strings.TrimPrefix(l, "stdout F "), "stderr F "))
		}
		e.remove(t, id)
		return strings.Join(lines, "\n"), st
	}

	t.Run("stop unknown container", func(t *testing.T) {
		// The kubelet retries stops of containers that are already gone.
		e.stop(t, "0123456789abcdef0123456789abcdef", 0)
		_, err := e.d.Runtime.StopContainer(ctxT(t, time.Minute), &runtimeapi.StopContainerRequest{})
		expectCode(t, err, codes.InvalidArgument, "container_id")
	})

	t.Run("seccomp", func(t *testing.T) {
		// Seccomp mode from /proc/self/status: 0 none, 2 a filter.
		const mode = "grep Seccomp: /proc/self/status | tr -d '\\t '"
		if out, _ := output(t, e.config("sec-unset", "sh", "-c", mode)); out != "Seccomp:0" {
			t.Errorf("unset profile: %q, want unconfined", out)
		}
		cfg := e.config("sec-default", "sh", "-c", mode)
		sc(cfg).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
		if out, _ := output(t, cfg); out != "Seccomp:2" {
			t.Errorf("RuntimeDefault: %q, want a filter", out)
		}
		// A profile blocking sethostname: it binds an unprivileged
		// container and is ignored for a privileged one.
		prof := filepath.Join(e.d.Dir, "no-sethostname.json")
		if err := os.WriteFile(prof, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["sethostname"],"action":"SCMP_ACT_ERRNO"}]}`), 0o644); err != nil {
			t.Fatal(err)
		}
		const setHost = "hostname conformance-host && echo set || echo refused"
		cfg = e.config("sec-local", "sh", "-c", setHost)
		sc(cfg).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: prof}
		sc(cfg).Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN"}}
		if out, _ := output(t, cfg); !strings.HasSuffix(out, "refused") {
			t.Errorf("localhost profile on an unprivileged container: %q, want refused", out)
		}
		cfg = e.config("sec-priv", "sh", "-c", setHost)
		sc(cfg).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: prof}
		sc(cfg).Privileged = true
		if out, _ := output(t, cfg); out != "set" {
			t.Errorf("privileged container: %q, want the profile ignored", out)
		}
	})

	t.Run("run_as_group without a user", func(t *testing.T) {
		cfg := e.config("group-only", "true")
		sc(cfg).RunAsGroup = &runtimeapi.Int64Value{Value: 1000}
		_, err := e.create(t, cfg)
		expectCode(t, err, codes.InvalidArgument, "run_as_group")
		pc := podConfig("group-only")
		pc.Linux.SecurityContext.RunAsGroup = &runtimeapi.Int64Value{Value: 1000}
		_, err = e.d.Runtime.RunPodSandbox(ctxT(t, time.Minute), &runtimeapi.RunPodSandboxRequest{Config: pc})
		expectCode(t, err, codes.InvalidArgument, "run_as_group")
	})

	t.Run("supplemental groups policy", func(t *testing.T) {
		st, err := e.d.Runtime.Status(ctxT(t, 10*time.Second), &runtimeapi.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if !st.GetFeatures().GetSupplementalGroupsPolicy() {
			t.Error("Status does not advertise supplemental_groups_policy")
		}
		// An image whose /etc/group puts user app in groups 10 and 50.
		ref := e.reg.Ref("ctr/groups:1")
		e.reg.Push(t, "ctr/groups:1", testutil.BusyboxImage(t, testutil.ImageSpec{ExtraLayers: []map[string]string{{
			"etc/group": "root:x:0:\napp:x:1000:\nwheel:x:10:root,app\nstaff:x:50:app\n",
		}}}))
		if _, err := e.d.Images.PullImage(ctxT(t, time.Minute), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			policy runtimeapi.SupplementalGroupsPolicy
			want   []int64
		}{
			{runtimeapi.SupplementalGroupsPolicy_Merge, []int64{1000, 10, 50, 5000}},
			{runtimeapi.SupplementalGroupsPolicy_Strict, []int64{1000, 5000}},
		} {
			cfg := e.config("groups-"+strings.ToLower(tc.policy.String()), "sh", "-c", "id -u; id -g; cat /proc/self/status | grep ^Groups: | cut -f2")
			cfg.Image.Image = ref
			sc(cfg).RunAsUser = &runtimeapi.Int64Value{Value: 1000}
			sc(cfg).SupplementalGroups = []int64{5000}
			sc(cfg).SupplementalGroupsPolicy = tc.policy
			out, st := output(t, cfg)
			lines := strings.Split(out, "\n")
			if len(lines) != 3 || lines[0] != "1000" || lines[1] != "1000" {
				t.Fatalf("%v: output %q", tc.policy, out)
			}
			var got []int64
			for _, f := range strings.Fields(lines[2]) {
				var g int64
				for _, r := range f {
					g = g*10 + int64(r-'0')
				}
				got = append(got, g)
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tc.want))
			if !slices.Equal(got, want) {
				t.Errorf("%v: process groups %v, want %v", tc.policy, got, want)
			}
			u := st.GetUser().GetLinux()
			reported := slices.Sorted(slices.Values(u.GetSupplementalGroups()))
			if u.GetUid() != 1000 || u.GetGid() != 1000 || !slices.Equal(reported, want) {
				t.Errorf("%v: status user %v, want uid 1000 gid 1000 groups %v", tc.policy, u, want)
			}
		}
	})
}

// TestRemoveImageConcurrently removes one image from four calls at once,
// a few times over: all must succeed, since an image a concurrent call
// removed is removed.
func TestRemoveImageConcurrently(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	reg.Push(t, "rm/race:1", testutil.BusyboxImage(t, imgSpec))
	d := startImageDaemon(t, reg.RegistriesConf(), nil)
	ref := reg.Ref("rm/race:1")
	for round := range 8 {
		id, err := pullImage(t, d, ref, nil)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		names := []string{ref, id, ref, id}
		errs := make([]error, len(names))
		for i, name := range names {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = d.Images.RemoveImage(imgCtx(t, time.Minute), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: name}})
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: RemoveImage %d: %v", round, i, err)
			}
		}
	}
}

// TestRecursiveReadOnlyMount mounts a host directory that has a tmpfs
// mounted beneath it: with recursive_read_only the tmpfs is read-only in
// the container too, where a plain read-only bind leaves it writable.
// Status advertises the feature (this host's runc lists rro and its
// kernel is past 5.12), and bad combinations are refused by name.
func TestRecursiveReadOnlyMount(t *testing.T) {
	e := startCtrEnv(t)
	st, err := e.d.Runtime.Status(ctxT(t, 10*time.Second), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range st.GetRuntimeHandlers() {
		if !h.GetFeatures().GetRecursiveReadOnlyMounts() {
			t.Errorf("handler %q does not advertise recursive_read_only_mounts", h.GetName())
		}
	}
	src := filepath.Join(e.d.Dir, "rro-src")
	sub := filepath.Join(src, "sub")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(sub, unix.MNT_DETACH) })

	const probe = "touch /data/top 2>/dev/null && echo top-rw || echo top-ro; touch /data/sub/x 2>/dev/null && echo sub-rw || echo sub-ro"
	for _, tc := range []struct {
		recursive bool
		want      string
	}{
		{false, "top-ro\nsub-rw"},
		{true, "top-ro\nsub-ro"},
	} {
		cfg := e.config(fmt.Sprintf("rro-%v", tc.recursive), "sh", "-c", probe)
		cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: src, Readonly: true, RecursiveReadOnly: tc.recursive}}
		id := e.run(t, cfg)
		st := e.waitExited(t, id, 10*time.Second)
		var lines []string
		for _, l := range logLines(t, st.GetLogPath()) {
			lines = append(lines, strings.TrimPrefix(l, "stdout F "))
		}
		e.remove(t, id)
		if got := strings.Join(lines, "\n"); got != tc.want {
			t.Errorf("recursive_read_only=%v: %q, want %q", tc.recursive, got, tc.want)
		}
	}
	for name, m := range map[string]*runtimeapi.Mount{
		"without readonly": {ContainerPath: "/data", HostPath: src, RecursiveReadOnly: true},
		"with host-to-container propagation": {ContainerPath: "/data", HostPath: src, Readonly: true, RecursiveReadOnly: true,
			Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
	} {
		cfg := e.config("rro-bad", "true")
		cfg.Mounts = []*runtimeapi.Mount{m}
		_, err := e.create(t, cfg)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		expectCode(t, err, codes.InvalidArgument, "recursive_read_only")
	}
}
