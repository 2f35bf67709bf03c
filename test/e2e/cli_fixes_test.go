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
