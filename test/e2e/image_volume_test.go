package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// volEnv is a ctrEnv with a pulled image to mount as a volume.
type volEnv struct {
	*ctrEnv
	volRef string // the image's tag
	volID  string // what PullImage answered, as the kubelet passes it
}

func startVolEnv(t *testing.T) *volEnv {
	t.Helper()
	e := &volEnv{ctrEnv: startCtrEnv(t)}
	e.reg.Push(t, "vol/data:1", testutil.BusyboxImage(t, testutil.ImageSpec{ExtraLayers: []map[string]string{{
		"data/hello.txt":     "hello from the image\n",
		"data/sub/inner.txt": "inner\n",
		"data/run.sh":        "#!/bin/sh\necho ran\n",
	}}}))
	// Pushed, never pulled: an image volume of it is NotFound.
	e.reg.Push(t, "vol/absent:1", testutil.BusyboxImage(t, testutil.ImageSpec{Labels: map[string]string{"absent": "yes"}}))
	e.volRef = e.reg.Ref("vol/data:1")
	resp, err := e.d.Images.PullImage(ctxT(t, time.Minute), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: e.volRef}})
	if err != nil {
		t.Fatal(err)
	}
	e.volID = resp.GetImageRef()
	return e
}

// imageMount is a Mount of image ref at dst, as the kubelet sends it.
func imageMount(dst, ref, sub string, opts ...string) *runtimeapi.Mount {
	return &runtimeapi.Mount{ContainerPath: dst, Image: &runtimeapi.ImageSpec{Image: ref}, ImageSubPath: sub,
		Readonly: true, MountOptions: opts}
}

// daemonMounts lists the mount points under the daemon's directory.
func daemonMounts(t *testing.T, e *volEnv) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(readFile(t, "/proc/self/mountinfo"), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], e.d.Dir) {
			out = append(out, f[4])
		}
	}
	return out
}

// mountCount counts the kernel mounts at p.
func mountCount(t *testing.T, p string) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(readFile(t, "/proc/self/mountinfo"), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == p {
			n++
		}
	}
	return n
}

// volumeSource is the host source of the container's mount at dst, from
// the OCI spec berthd wrote.
func volumeSource(t *testing.T, e *volEnv, id, dst string) string {
	t.Helper()
	resp, err := e.d.Runtime.ContainerStatus(ctxT(t, 10*time.Second), &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		RuntimeSpec struct {
			Mounts []struct{ Destination, Source string }
		} `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(resp.GetInfo()["info"]), &info); err != nil {
		t.Fatal(err)
	}
	for _, m := range info.RuntimeSpec.Mounts {
		if m.Destination == dst {
			return m.Source
		}
	}
	t.Fatalf("container %s has no mount at %s", id, dst)
	return ""
}

func statusMount(t *testing.T, e *volEnv, id, dst string) *runtimeapi.Mount {
	t.Helper()
	for _, m := range e.status(t, id).GetMounts() {
		if m.GetContainerPath() == dst {
			return m
		}
	}
	t.Fatalf("ContainerStatus of %s reports no mount at %s", id, dst)
	return nil
}

func (e *volEnv) removeImage(t *testing.T) error {
	t.Helper()
	_, err := e.d.Images.RemoveImage(ctxT(t, time.Minute), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: e.volID}})
	return err
}

// An image volume shows the image's files read-only (a sub path selects
// a directory), honours noexec, is mounted once for every container
// using it, keeps its image from removal, survives a restart of berthd,
// and goes with the last container using it.
func TestImageVolume(t *testing.T) {
	e := startVolEnv(t)
	before := daemonMounts(t, e)

	whole := e.config("whole", "sleep", "1000")
	whole.Mounts = []*runtimeapi.Mount{imageMount("/vol", e.volID, "", "noexec", "nosuid", "nodev")}
	c1 := e.run(t, whole)
	if out := e.exec(t, c1, 5, "cat", "/vol/data/hello.txt"); string(out.GetStdout()) != "hello from the image\n" {
		t.Fatalf("file from the image: %q %q", out.GetStdout(), out.GetStderr())
	}
	if out := e.exec(t, c1, 5, "touch", "/vol/data/new"); out.GetExitCode() == 0 {
		t.Fatal("an image volume is writable")
	}
	if out := e.exec(t, c1, 5, "/vol/data/run.sh"); out.GetExitCode() == 0 {
		t.Fatalf("noexec not honoured: %q", out.GetStdout())
	}
	if out := e.exec(t, c1, 5, "grep", " /vol ", "/proc/mounts"); !strings.Contains(string(out.GetStdout()), "ro,nosuid,nodev,noexec") {
		t.Fatalf("/vol in the container: %q", out.GetStdout())
	}

	sub := e.config("sub", "sleep", "1000")
	sub.Mounts = []*runtimeapi.Mount{imageMount("/inner", e.volRef, "data/sub")}
	c2 := e.run(t, sub)
	if out := e.exec(t, c2, 5, "cat", "/inner/inner.txt"); string(out.GetStdout()) != "inner\n" {
		t.Fatalf("file from the sub path: %q %q", out.GetStdout(), out.GetStderr())
	}

	// One storage mount of the image serves both containers.
	root := volumeSource(t, e, c1, "/vol")
	if got := volumeSource(t, e, c2, "/inner"); got != filepath.Join(root, "data/sub") {
		t.Fatalf("sub path source %s, image mounted at %s", got, root)
	}
	if n := mountCount(t, root); n != 1 {
		t.Fatalf("the image is mounted %d times at %s, want once", n, root)
	}

	m := statusMount(t, e, c1, "/vol")
	if m.GetImage().GetImage() != e.volID || m.GetImage().GetImageRef() == "" || !m.GetReadonly() || m.GetHostPath() != "" {
		t.Fatalf("status of the image volume: %v", m)
	}
	if !strings.Contains(m.GetImage().GetImageRef(), "@sha256:") {
		t.Fatalf("image_ref %q is not a digest", m.GetImage().GetImageRef())
	}
	if m := statusMount(t, e, c2, "/inner"); m.GetImageSubPath() != "data/sub" || m.GetImage().GetImage() != e.volRef {
		t.Fatalf("status of the sub path volume: %v", m)
	}

	if err := e.removeImage(t); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("RemoveImage of a mounted image: %v, want FailedPrecondition", err)
	}

	// After a restart the mount stays for the running containers, and
	// the references come back from their records.
	e.d.Stop(t)
	e.d.Start(t)
	if st := e.status(t, c1); st.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("after restart: %v", st.GetState())
	}
	if out := e.exec(t, c1, 5, "cat", "/vol/data/hello.txt"); string(out.GetStdout()) != "hello from the image\n" {
		t.Fatalf("file after restart: %q", out.GetStdout())
	}
	if err := e.removeImage(t); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("RemoveImage of a mounted image after restart: %v, want FailedPrecondition", err)
	}
	// A new user after the restart shares the same mount.
	again := e.config("again", "sleep", "1000")
	again.Mounts = []*runtimeapi.Mount{imageMount("/vol", e.volID, "")}
	c3 := e.run(t, again)
	if got := volumeSource(t, e, c3, "/vol"); got != root || mountCount(t, root) != 1 {
		t.Fatalf("after restart: source %s (image at %s), %d mounts", got, root, mountCount(t, root))
	}

	for _, id := range []string{c1, c2} {
		e.stop(t, id, 0)
		e.remove(t, id)
		if n := mountCount(t, root); n != 1 {
			t.Fatalf("after removing %s of three users: %d mounts of the image", id, n)
		}
	}
	e.stop(t, c3, 0)
	e.remove(t, c3)
	if n := mountCount(t, root); n != 0 {
		t.Fatalf("the image is still mounted %d times after its last user went", n)
	}
	if err := e.removeImage(t); err != nil {
		t.Fatalf("RemoveImage once no container mounts it: %v", err)
	}
	if after := daemonMounts(t, e); len(after) != len(before) {
		t.Fatalf("mounts under the daemon dir: %d before, %d after:\n%s", len(before), len(after), strings.Join(after, "\n"))
	}
}

// Every refused image volume is refused before anything is made: no
// mount, no container.
func TestImageVolumeBadInput(t *testing.T) {
	e := startVolEnv(t)
	before := daemonMounts(t, e)
	for _, tc := range []struct {
		name  string
		mount *runtimeapi.Mount
		code  codes.Code
		word  string // the message names it
	}{
		{"hostpath", &runtimeapi.Mount{ContainerPath: "/vol", HostPath: e.d.Dir, Image: &runtimeapi.ImageSpec{Image: e.volID}},
			codes.InvalidArgument, "host_path"},
		{"notpulled", imageMount("/vol", e.reg.Ref("vol/absent:1"), ""), codes.NotFound, "vol/absent"},
		{"dotdot", imageMount("/vol", e.volID, "data/../../etc"), codes.InvalidArgument, "image_sub_path"},
		{"missing", imageMount("/vol", e.volID, "data/nothing"), codes.NotFound, "image_sub_path"},
	} {
		cfg := e.config(tc.name, "sleep", "1000")
		cfg.Mounts = []*runtimeapi.Mount{tc.mount}
		_, err := e.create(t, cfg)
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.word) {
			t.Errorf("%s: %v, want %v naming %s", tc.name, err, tc.code, tc.word)
		}
		if after := daemonMounts(t, e); len(after) != len(before) {
			t.Errorf("%s: mounts under the daemon dir: %d before, %d after:\n%s", tc.name, len(before), len(after), strings.Join(after, "\n"))
		}
	}
	resp, err := e.d.Runtime.ListContainers(ctxT(t, 10*time.Second), &runtimeapi.ListContainersRequest{})
	if err != nil || len(resp.GetContainers()) != 0 {
		t.Fatalf("refused creations left containers: %v %v", resp.GetContainers(), err)
	}
	// Nothing holds the image either.
	if err := e.removeImage(t); err != nil {
		t.Fatalf("RemoveImage after refused creations: %v", err)
	}
}

// `berthd wipe` unmounts the images its containers mounted as volumes,
// and the image can then be removed.
func TestImageVolumeWipe(t *testing.T) {
	e := startVolEnv(t)
	cfg := e.config("wiped", "sleep", "1000")
	cfg.Mounts = []*runtimeapi.Mount{imageMount("/vol", e.volID, "")}
	id := e.run(t, cfg)
	root := volumeSource(t, e, id, "/vol")
	e.d.Stop(t)
	if n := mountCount(t, root); n != 1 {
		t.Fatalf("image mounts with berthd stopped: %d, want 1", n)
	}
	berthdWipe(t, e.d)
	if n := mountCount(t, root); n != 0 {
		t.Fatalf("the image is still mounted %d times after wipe", n)
	}
	e.d.Start(t)
	if err := e.removeImage(t); err != nil {
		t.Fatalf("RemoveImage after wipe: %v", err)
	}
}
