package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// These tests hold berth's CLI output next to the real crictl's (built
// from its Go module by testutil.Crictl) on the same berthd: what scripts
// written for crictl read must be the same in berth.

// crictlRun runs crictl against d and returns its stdout.
func crictlRun(t *testing.T, d *testutil.Daemon, args ...string) string {
	t.Helper()
	ep := "unix://" + d.Socket
	// crictl wants a config file that exists; this one names berthd.
	cfg := cliWrite(t, t.TempDir(), "crictl.yaml", "runtime-endpoint: "+ep+"\nimage-endpoint: "+ep+"\ntimeout: 60\n")
	cmd := exec.Command(testutil.BuildCrictl(t), append([]string{"--config", cfg}, args...)...)
	for _, kv := range os.Environ() {
		// crictl takes these, even empty, over its config file.
		if !strings.HasPrefix(kv, "CONTAINER_RUNTIME_ENDPOINT=") && !strings.HasPrefix(kv, "IMAGE_SERVICE_ENDPOINT=") && !strings.HasPrefix(kv, "CRI_CONFIG_FILE=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("crictl %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// jsonValue decodes a JSON document.
func jsonValue(t *testing.T, what, out string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%s is not JSON: %v\n%s", what, err, out)
	}
	return v
}

// sameJSON fails unless berth's and crictl's output of the same command
// decode to the same document, naming the first difference.
func sameJSON(t *testing.T, d *testutil.Daemon, args ...string) any {
	t.Helper()
	b := jsonValue(t, "berth "+strings.Join(args, " "), cli(t, d, args...))
	c := jsonValue(t, "crictl "+strings.Join(args, " "), crictlRun(t, d, args...))
	if path, bv, cv, ok := firstDiff("", b, c); !ok {
		t.Errorf("%s: berth and crictl differ at %s: berth %v, crictl %v", strings.Join(args, " "), path, bv, cv)
	}
	return b
}

// firstDiff walks two decoded documents and returns where they differ.
func firstDiff(path string, a, b any) (string, any, any, bool) {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		keys := map[string]bool{}
		for k := range am {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			av, inA := am[k]
			bv, inB := bm[k]
			if inA != inB {
				return path + "." + k, fmt.Sprintf("present=%v", inA), fmt.Sprintf("present=%v", inB), false
			}
			if p, x, y, ok := firstDiff(path+"."+k, av, bv); !ok {
				return p, x, y, false
			}
		}
		return "", nil, nil, true
	}
	al, aok := a.([]any)
	bl, bok := b.([]any)
	if aok && bok && len(al) == len(bl) {
		for i := range al {
			if p, x, y, ok := firstDiff(fmt.Sprintf("%s[%d]", path, i), al[i], bl[i]); !ok {
				return p, x, y, false
			}
		}
		return "", nil, nil, true
	}
	return path, a, b, reflect.DeepEqual(a, b)
}

// field digs a value out of a decoded document, as jq .a.b does.
func field(v any, path ...string) any {
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	return v
}

// waitState polls berthd until a container is in the given state.
func waitState(t *testing.T, d *testutil.Daemon, id string, want runtimeapi.ContainerState) {
	t.Helper()
	eventually(t, fmt.Sprintf("container %s to be %v", id, want), func() bool {
		st, err := d.Runtime.ContainerStatus(ctxT(t, 10*time.Second), &runtimeapi.ContainerStatusRequest{ContainerId: id})
		return err == nil && st.GetStatus().GetState() == want
	})
}

// TestCLIInspectLikeCrictl (issue 13, item 6): inspect, inspectp and
// inspecti print what crictl prints for containers in every state, ready
// and stopped pods and images: every field, zero values included, enums
// by name and times in RFC 3339.
func TestCLIInspectLikeCrictl(t *testing.T) {
	d, _, ref := cliDaemon(t)
	cliSkipUnimplemented(t, d, "ps")
	testutil.BuildCrictl(t) // build it (once per machine) before timing anything
	cli(t, d, "pull", ref)
	dir := t.TempDir()
	podFile := cliWrite(t, dir, "pod.yaml", cliPodYAML("compat", "cc", filepath.Join(dir, "logs")))
	podID := strings.TrimSpace(cli(t, d, "runp", podFile))
	create := func(name, script string) string {
		f := cliWrite(t, dir, name+".yaml", cliCtrYAML(name, ref, script))
		return strings.TrimSpace(cli(t, d, "create", podID, f, podFile))
	}
	done, failed, created, running := create("done", "true"), create("failed", "exit 3"), create("created", "sleep 1000"), create("running", "sleep 1000")
	cli(t, d, "start", done, failed, running)
	waitState(t, d, done, runtimeapi.ContainerState_CONTAINER_EXITED)
	waitState(t, d, failed, runtimeapi.ContainerState_CONTAINER_EXITED)

	rfc3339 := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$`)
	for _, c := range []struct {
		id, state string
		exitCode  float64
	}{{done, "CONTAINER_EXITED", 0}, {failed, "CONTAINER_EXITED", 3}, {created, "CONTAINER_CREATED", 0}, {running, "CONTAINER_RUNNING", 0}} {
		doc := sameJSON(t, d, "inspect", c.id)
		// What a jq script reads: present even when zero, by name, as times.
		if v, ok := field(doc, "status").(map[string]any)["exitCode"]; !ok || v != c.exitCode {
			t.Errorf("inspect %s: .status.exitCode = %v (present %v), want %v", c.id, v, ok, c.exitCode)
		}
		if v := field(doc, "status", "state"); v != c.state {
			t.Errorf("inspect %s: .status.state = %v, want %s", c.id, v, c.state)
		}
		for _, k := range []string{"createdAt", "startedAt", "finishedAt"} {
			if v, _ := field(doc, "status", k).(string); !rfc3339.MatchString(v) {
				t.Errorf("inspect %s: .status.%s = %q, not an RFC 3339 time", c.id, k, v)
			}
		}
		if out := cli(t, d, "inspect", "-o", "go-template", "--template", "{{.status.exitCode}} {{.status.state}}", c.id); out != crictlRun(t, d, "inspect", "-o", "go-template", "--template", "{{.status.exitCode}} {{.status.state}}", c.id) {
			t.Errorf("inspect -o go-template of %s: berth %q", c.id, out)
		}
	}
	// Several at once: one JSON array, as crictl prints.
	if arr, ok := sameJSON(t, d, "inspect", done, failed).([]any); !ok || len(arr) != 2 {
		t.Errorf("inspect of two containers is not an array of two: %T", arr)
	}
	if out := cli(t, d, "inspect", "-o", "yaml", failed); !strings.Contains(out, "exitCode: 3\n") || !strings.Contains(out, "state: CONTAINER_EXITED\n") {
		t.Errorf("inspect -o yaml:\n%s", out)
	}

	doc := sameJSON(t, d, "inspectp", podID)
	if v := field(doc, "status", "state"); v != "SANDBOX_READY" {
		t.Errorf("inspectp: .status.state = %v", v)
	}
	if v, _ := field(doc, "status", "createdAt").(string); !rfc3339.MatchString(v) {
		t.Errorf("inspectp: .status.createdAt = %q", v)
	}
	sameJSON(t, d, "inspecti", ref)
	if out := cli(t, d, "inspecti", "-o", "go-template", "--template", "{{.status.id}}", ref); out != crictlRun(t, d, "inspecti", "-o", "go-template", "--template", "{{.status.id}}", ref) {
		t.Errorf("inspecti -o go-template: %q", out)
	}

	cli(t, d, "stopp", podID)
	sameJSON(t, d, "inspectp", podID)
	sameJSON(t, d, "inspect", running)
	// A missing key is an error, as in crictl, not "<no value>".
	cliFail(t, d, "nosuchkey", "inspect", "-o", "go-template", "--template", "{{.status.nosuchkey}}", done)
	cliFail(t, d, "needs --template", "inspect", "-o", "go-template", done)
	cli(t, d, "rmp", "-f", "-a")
}

// pushIndex pushes img under repoTag as a one-platform OCI image index,
// as multi-arch images are published, and returns the index digest.
func pushIndex(t *testing.T, reg *testutil.Registry, repoTag string, img v1.Image) v1.Hash {
	t.Helper()
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), mutate.IndexAddendum{
		Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}},
	})
	ref, err := name.ParseReference(reg.Ref(repoTag))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx, reg.RemoteOptions()...); err != nil {
		t.Fatalf("push index %s: %v", repoTag, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestCLIListsLikeCrictl (issue 13, item 7): the list commands' JSON is
// crictl's, their habitual flags work, and images --digests shows the
// digest crictl shows: the tag's index digest.
func TestCLIListsLikeCrictl(t *testing.T) {
	d, reg, ref := cliDaemon(t)
	cliSkipUnimplemented(t, d, "ps")
	testutil.BuildCrictl(t)
	idxDigest := pushIndex(t, reg, "cli/multi:1", testutil.BusyboxImage(t, testutil.ImageSpec{Labels: map[string]string{"multi": "1"}}))
	reg.Push(t, "cli/busybox:2.0", testutil.BusyboxImage(t, testutil.ImageSpec{Labels: map[string]string{"v": "2"}}))
	for _, r := range []string{ref, reg.Ref("cli/busybox:2.0"), reg.Ref("cli/multi:1")} {
		cli(t, d, "pull", r)
	}

	// images
	sameJSON(t, d, "images", "-o", "json")
	berthRows, crictlRows := cliTable(t, cli(t, d, "images", "--digests")), cliTable(t, crictlRun(t, d, "images", "--digests"))
	if !reflect.DeepEqual(berthRows, crictlRows) {
		t.Errorf("images --digests:\nberth  %q\ncrictl %q", berthRows, crictlRows)
	}
	multi := slices.IndexFunc(berthRows, func(r []string) bool { return strings.HasSuffix(r[0], "/cli/multi") })
	if multi < 0 || berthRows[multi][2] != idxDigest.Hex[:13] {
		t.Errorf("images --digests: cli/multi's digest is not its index digest %s: %q", idxDigest, berthRows)
	}
	berthRows, crictlRows = cliTable(t, cli(t, d, "images", "--digests", "--no-trunc")), cliTable(t, crictlRun(t, d, "images", "--digests", "--no-trunc"))
	if !reflect.DeepEqual(berthRows, crictlRows) || berthRows[multi][2] != idxDigest.String() {
		t.Errorf("images --digests --no-trunc (index %s):\nberth  %q\ncrictl %q", idxDigest, berthRows, crictlRows)
	}
	// A repository without a tag lists all its tags.
	rows := cliTable(t, cli(t, d, "images", reg.Host+"/cli/busybox"))
	if len(rows) != 3 || rows[1][1] != "1.0" || rows[2][1] != "2.0" {
		t.Errorf("images REPO: %q", rows)
	}
	if rows := cliTable(t, cli(t, d, "images", "cli/busybox")); len(rows) != 3 {
		t.Errorf("images by the repository's trailing path: %q", rows)
	}
	if rows := cliTable(t, cli(t, d, "images", ref)); len(rows) != 2 || rows[1][1] != "1.0" {
		t.Errorf("images REPO:TAG: %q", rows)
	}
	// --filter, and -v with the fields crictl prints.
	if b, c := cli(t, d, "images", "-q", "--filter", "reference=cli/busybox"), crictlRun(t, d, "images", "-q", "--filter", "reference=cli/busybox"); b != c || len(cliIDs(t, b)) != 2 {
		t.Errorf("images --filter reference: berth %q, crictl %q", b, c)
	}
	if b, c := cli(t, d, "images", "-q", "--filter", "dangling=true"), crictlRun(t, d, "images", "-q", "--filter", "dangling=true"); b != c || b != "" {
		t.Errorf("images --filter dangling=true: berth %q, crictl %q", b, c)
	}
	verboseLines := func(out string) []string {
		var keep []string
		for _, l := range strings.Split(out, "\n") {
			if regexp.MustCompile(`^(ID|RepoTags|RepoDigests|Size|PodID|Name|Attempt|State|UID|Namespace|Status): `).MatchString(l) {
				keep = append(keep, l)
			}
		}
		return keep
	}
	if b, c := verboseLines(cli(t, d, "images", "-v")), verboseLines(crictlRun(t, d, "images", "-v")); !reflect.DeepEqual(b, c) || len(b) == 0 {
		t.Errorf("images -v:\nberth  %q\ncrictl %q", b, c)
	}

	// pods and containers in two namespaces.
	dir := t.TempDir()
	var pods []string
	for _, ns := range []string{"alpha", "beta"} {
		podFile := cliWrite(t, dir, ns+".yaml", cliPodYAML("web", ns, filepath.Join(dir, ns)))
		ctrFile := cliWrite(t, dir, ns+"-ctr.yaml", cliCtrYAML("app", ref, "sleep 1000"))
		cli(t, d, "run", ctrFile, podFile)
		pods = append(pods, cliIDs(t, cli(t, d, "pods", "-q", "--namespace", ns))...)
	}
	sameJSON(t, d, "ps", "-a", "-o", "json")
	sameJSON(t, d, "pods", "-o", "json")
	ids := cliIDs(t, cli(t, d, "ps", "-q", "--namespace", "^alpha$"))
	if len(ids) != 1 {
		t.Fatalf("ps --namespace alpha: %v", ids)
	}
	rows = cliTable(t, cli(t, d, "ps", "--namespace", "alpha"))
	if len(rows) != 2 || rows[1][0] != ids[0][:13] || rows[1][7] != "web" || rows[1][8] != "alpha" {
		t.Errorf("ps --namespace alpha: %q", rows)
	}
	if b, c := verboseLines(cli(t, d, "ps", "-v")), verboseLines(crictlRun(t, d, "ps", "-v")); len(b) == 0 || !containsAll(b, c, "ID: ", "PodID: ", "Name: ", "Attempt: ", "State: ") {
		t.Errorf("ps -v:\nberth  %q\ncrictl %q", b, c)
	}
	if b, c := verboseLines(cli(t, d, "pods", "-v")), verboseLines(crictlRun(t, d, "pods", "-v")); len(b) == 0 || !containsAll(b, c, "ID: ", "Name: ", "Namespace: ", "Status: ") {
		t.Errorf("pods -v:\nberth  %q\ncrictl %q", b, c)
	}

	// -o go-template on every command with -o, over its -o json document.
	for _, c := range [][]string{
		{"ps", "-a", "-o", "go-template", "--template", `{{range .containers}}{{.id}}{{"\n"}}{{end}}`},
		{"pods", "-o", "go-template", "--template", `{{range .items}}{{.id}}{{"\n"}}{{end}}`},
		{"images", "-o", "go-template", "--template", `{{range .images}}{{.id}}{{"\n"}}{{end}}`},
		{"version", "-o", "go-template", "--template", "{{.runtimeName}}"},
		{"info", "-o", "go-template", "--template", "{{range .status.conditions}}{{.type}} {{end}}"},
		{"imagefsinfo", "-o", "go-template", "--template", "{{range .imageFilesystems}}{{.fsId.mountpoint}}{{end}}"},
		{"stats", "-o", "go-template", "--template", `{{range .stats}}{{.attributes.id}}{{"\n"}}{{end}}`},
		{"statsp", "-o", "go-template", "--template", `{{range .stats}}{{.attributes.id}}{{"\n"}}{{end}}`},
	} {
		out, errOut, code := cliRun(t, d, "", c...)
		if code != 0 || strings.TrimSpace(out) == "" {
			t.Errorf("berth %s: exit %d, %q %q", strings.Join(c, " "), code, out, errOut)
		}
	}
	if out := cli(t, d, "version", "-o", "go-template", "--template", "{{.runtimeName}}"); out != "berth\n" {
		t.Errorf("version -o go-template: %q", out)
	}
	if out := cli(t, d, "pods", "-o", "go-template", "--template", `{{range .items}}{{.metadata.namespace}} {{end}}`); out != "beta alpha \n" {
		t.Errorf("pods -o go-template: %q", out)
	}

	// --version is the client's own, the same build as berthd here.
	rt := &runtimeapi.VersionResponse{}
	cliDecode(t, cli(t, d, "version", "-o", "json"), rt)
	if out := cli(t, d, "--version"); out != "berth version "+rt.RuntimeVersion+"\n" {
		t.Errorf("--version printed %q, berthd is %s", out, rt.RuntimeVersion)
	}
	cli(t, d, "rmp", "-f", "-a")
}

// containsAll tells whether berth's lines hold every crictl line that
// starts with one of prefixes.
func containsAll(berth, crictl []string, prefixes ...string) bool {
	n := 0
	for _, l := range crictl {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				n++
				if !slices.Contains(berth, l) {
					return false
				}
			}
		}
	}
	return n > 0
}
