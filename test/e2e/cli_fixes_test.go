package e2e

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// cliImageNames are the tags of the one image berth lists, and its ID.
func cliImageNames(t *testing.T, d *testutil.Daemon) (string, []string) {
	t.Helper()
	list := &runtimeapi.ListImagesResponse{}
	cliDecode(t, cli(t, d, "images", "-o", "json"), list)
	if len(list.Images) != 1 {
		t.Fatalf("want one image, have %v", list.Images)
	}
	return list.Images[0].Id, list.Images[0].RepoTags
}

// rmi of one name of an image that has another removes only that name,
// as crictl does; the last name, or an ID prefix, removes the image.
func TestCLIRmiUntagsAName(t *testing.T) {
	d, _, ref := cliDaemon(t)
	cli(t, d, "pull", ref)
	archive := filepath.Join(t.TempDir(), "img.tar")
	cli(t, d, "image", "export", ref, archive)
	cli(t, d, "image", "import", archive, "--name", "myhttpd:v1")
	id, tags := cliImageNames(t, d)
	if len(tags) != 2 {
		t.Fatalf("import did not add a second name: %v", tags)
	}

	if out := cli(t, d, "rmi", "localhost/myhttpd:v1"); out != "Untagged: localhost/myhttpd:v1\n" {
		t.Errorf("rmi of the second name printed %q", out)
	}
	if gotID, tags := cliImageNames(t, d); gotID != id || len(tags) != 1 || tags[0] != ref {
		t.Fatalf("after rmi of the second name: %s %v, want %s [%s]", gotID, tags, id, ref)
	}
	// A short name is found as berth stores it.
	cli(t, d, "image", "import", archive, "--name", "myhttpd:v1")
	if out := cli(t, d, "rmi", "myhttpd:v1"); out != "Untagged: localhost/myhttpd:v1\n" {
		t.Errorf("rmi of the short name printed %q", out)
	}
	if _, tags := cliImageNames(t, d); len(tags) != 1 || tags[0] != ref {
		t.Fatalf("after rmi of the short name: %v", tags)
	}

	// The last name goes with the image.
	out := cli(t, d, "rmi", ref)
	if !regexp.MustCompile(`^Deleted: ` + regexp.QuoteMeta(ref) + `\n(Deleted: \S+@sha256:[0-9a-f]{64}\n)+$`).MatchString(out) {
		t.Errorf("rmi of the last name printed %q", out)
	}
	if out := cli(t, d, "images", "-q"); out != "" {
		t.Fatalf("image left after rmi of its last name: %q", out)
	}

	// An ID prefix removes the image whatever its names.
	cli(t, d, "pull", ref)
	cli(t, d, "image", "import", archive, "--name", "myhttpd:v1")
	id, _ = cliImageNames(t, d)
	out = cli(t, d, "rmi", strings.TrimPrefix(id, "sha256:")[:10])
	if !strings.Contains(out, "Deleted: "+ref+"\n") || !strings.Contains(out, "Deleted: localhost/myhttpd:v1\n") {
		t.Errorf("rmi by ID prefix printed %q", out)
	}
	if out := cli(t, d, "images", "-q"); out != "" {
		t.Fatalf("image left after rmi by ID prefix: %q", out)
	}
}

// A container reports the repo digest of the name it was created from,
// not that of another repository the same image is stored under.
func TestCLIContainerImageRefNamesItsRepository(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	img := testutil.BusyboxImage(t, testutil.ImageSpec{})
	digest := reg.Push(t, "e2e-test-images/busybox:1.29-2", img).String()
	reg.Push(t, "library/busybox:1.29", img)
	d := testutil.NewDaemon(t, testutil.DaemonOptions{BinDir: binDir})
	d.WriteRegistriesConf(t, reg.RegistriesConf())
	d.Start(t)
	tn := newTestNet(t, d.Dir)
	writeConf(t, d, "10-test.conflist", tn.conflist("bridge"))
	waitNetworkReady(t, d, true)

	own, other := reg.Ref("e2e-test-images/busybox:1.29-2"), reg.Ref("library/busybox:1.29")
	wantRef := reg.Host + "/e2e-test-images/busybox@" + digest
	cli(t, d, "pull", own)
	cli(t, d, "pull", other)
	id, tags := cliImageNames(t, d)
	if len(tags) != 2 || tags[0] != other {
		// What made the bug show: the other name is listed first.
		t.Fatalf("the test needs %s listed first: %v", other, tags)
	}

	dir := t.TempDir()
	podFile := cliWrite(t, dir, "pod.yaml", cliPodYAML("ref", "cli", filepath.Join(dir, "logs")))
	byName := cliWrite(t, dir, "by-name.yaml", cliCtrYAML("by-name", own, "sleep 1000"))
	// The kubelet creates from the ID it pulled, with the pod spec's
	// name as user_specified_image.
	byID := cliWrite(t, dir, "by-id.yaml", strings.Replace(cliCtrYAML("by-id", id, "sleep 1000"),
		"image: {image: ", "image: {user_specified_image: "+`"`+own+`"`+", image: ", 1))
	pod := strings.TrimSpace(cli(t, d, "runp", podFile))
	for _, ctrFile := range []string{byName, byID} {
		ctr := strings.TrimSpace(cli(t, d, "create", "--no-pull", pod, ctrFile, podFile))
		if st := cliState(t, d, ctr); st.ImageRef != wantRef || st.ImageId != id || st.GetImage().GetImage() != own {
			t.Errorf("%s: ContainerStatus image %q, image_ref %q, image_id %q; want %q, %q, %q", filepath.Base(ctrFile),
				st.GetImage().GetImage(), st.ImageRef, st.ImageId, own, wantRef, id)
		}
		list := &runtimeapi.ListContainersResponse{}
		cliDecode(t, cli(t, d, "ps", "-a", "-o", "json", "--id", ctr), list)
		if len(list.Containers) != 1 || list.Containers[0].ImageRef != wantRef {
			t.Errorf("%s: ListContainers image_ref: %v, want %q", filepath.Base(ctrFile), list.Containers, wantRef)
		}
	}
	cli(t, d, "rmp", "-f", pod)
}

// `berth run` whose container step fails removes the pod it made, but
// never a pod that was already running: RunPodSandbox answers a ready
// pod of the same metadata with that pod's id.
func TestCLIRunLeavesAnExistingPod(t *testing.T) {
	d, podFile, _, _ := cliContainerSetup(t, "sleep 1000")
	dir := t.TempDir()
	missing := cliWrite(t, dir, "missing.yaml", cliCtrYAML("missing", "localhost/berth/no-such-image:1", "true"))

	pod := strings.TrimSpace(cli(t, d, "runp", podFile))
	errOut := cliFail(t, d, "not found", "run", "--no-pull", missing, podFile)
	if !strings.Contains(errOut, "existed before") {
		t.Errorf("run's error does not say the pod was left: %q", errOut)
	}
	if ids := cliIDs(t, cli(t, d, "pods", "-q")); len(ids) != 1 || ids[0] != pod {
		t.Fatalf("pods after a failed run in an existing pod: %v, want %s still there", ids, pod)
	}
	cli(t, d, "rmp", "-f", pod)

	// With no pod before, the failed run cleans up the one it made.
	cliFail(t, d, "not found", "run", "--no-pull", missing, podFile)
	if out := strings.TrimSpace(cli(t, d, "pods", "-q")); out != "" {
		t.Fatalf("pods after a failed run: %q, want none", out)
	}
}
