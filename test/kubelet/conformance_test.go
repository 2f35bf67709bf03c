//go:build kubelet

package kubelet

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// The scenarios of this file are the CRI conformance features of
// Kubernetes 1.37 (issue 15) driven by the kubelet itself; the feature
// gates they need are GA and on.

// testImageVolume: an image volume (KEP-4639) mounts the pulled image's
// root filesystem read-only, whole and by subPath.
func testImageVolume(t *testing.T, e *env) {
	p := newPod("imgvol", ctr("main", "cat /img/www/index.html; cat /www/index.html; "+
		"touch /img/x 2>/dev/null && echo img-writable || echo img-read-only; exec sleep 3600"))
	p.Spec.Volumes = []corev1.Volume{{Name: "img", VolumeSource: corev1.VolumeSource{
		Image: &corev1.ImageVolumeSource{Reference: image, PullPolicy: corev1.PullIfNotPresent}}}}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{
		{Name: "img", MountPath: "/img"},
		{Name: "img", MountPath: "/www", SubPath: "www"},
	}
	e.writeManifest(t, p)
	t.Cleanup(func() { e.removeManifest(t, "imgvol") })
	e.waitPod(t, "imgvol", 3*time.Minute, running("main"))
	e.waitLogs(t, "imgvol", "main", false, time.Minute, "hello from berth\nhello from berth\nimg-read-only\n")
}

// Recursive read-only mounts have no scenario here: the kubelet asks its
// RuntimeClass manager for the pod's runtime handler before it looks at
// the handler's recursive_read_only_mounts feature, and a standalone
// kubelet (no API server) has no such manager, so it refuses
// recursiveReadOnly: Enabled on any runtime ("not supported by the
// runtime"). berth's e2e suite covers rro through the CRI.

// testSupplementalGroupsPolicy: the image's /etc/group makes user 1000
// ("app") a member of group 50; with Merge (the default) the process gets
// that group beside its own and the pod's, with Strict only the pod's.
// The pod status reports what the process really got.
func testSupplementalGroupsPolicy(t *testing.T, e *env) {
	for _, c := range []struct {
		name   string
		policy corev1.SupplementalGroupsPolicy
		want   []int64
	}{
		{"sgmerge", corev1.SupplementalGroupsPolicyMerge, []int64{50, 1000, 4000}},
		{"sgstrict", corev1.SupplementalGroupsPolicyStrict, []int64{1000, 4000}},
	} {
		t.Run(string(c.policy), func(t *testing.T) {
			uid, gid, policy := int64(1000), int64(1000), c.policy
			p := newPod(c.name, ctr("main", "echo groups=$(id -G | tr ' ' '\\n' | sort -n | xargs); exec sleep 3600"))
			p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: &uid, RunAsGroup: &gid,
				SupplementalGroups: []int64{4000}, SupplementalGroupsPolicy: &policy}
			e.writeManifest(t, p)
			t.Cleanup(func() { e.removeManifest(t, c.name) })
			pod := e.waitPod(t, c.name, 3*time.Minute, running("main"))
			e.waitLogs(t, c.name, "main", false, time.Minute, "groups="+strings.Trim(fmt.Sprint(c.want), "[]")+"\n")
			u := cstatus(pod, "main").User
			if u == nil || u.Linux == nil {
				t.Fatalf("pod status has no user for main: %+v", cstatus(pod, "main"))
			}
			got := slices.Clone(u.Linux.SupplementalGroups)
			slices.Sort(got)
			if u.Linux.UID != uid || u.Linux.GID != gid || !slices.Equal(got, c.want) {
				t.Errorf("status user %+v, want uid 1000 gid 1000 groups %v", u.Linux, c.want)
			}
		})
	}
}
