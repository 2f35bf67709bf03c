package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/metrics"
	"github.com/berth-cri/berth/internal/ociext"
)

// extInfo is what `berth info -o json` shows of the spec extensions.
type extInfo struct {
	CDI           ociext.CDIReport    `json:"cdi"`
	Hooks         ociext.HooksReport  `json:"hooks"`
	DefaultMounts ociext.MountsReport `json:"default_mounts"`
}

// waitExtInfo reads `berth info` (the real CLI, the verbose Status) until
// cond holds: the CDI spec and hook dirs are watched, and the reload
// follows a write by some moment.
func waitExtInfo(t *testing.T, e *ctrEnv, what string, cond func(extInfo) bool) extInfo {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var info extInfo
		if err := json.Unmarshal([]byte(cli(t, e.d, "info", "-o", "json")), &info); err != nil {
			t.Fatalf("berth info: %v", err)
		}
		if cond(info) {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("berth info never showed %s: %+v", what, info)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mknodTestDevice makes a character device in /dev with the numbers of
// /dev/null (CDI spec device nodes must live in /dev), removed at the end.
func mknodTestDevice(t *testing.T) string {
	t.Helper()
	node := fmt.Sprintf("/dev/berth-e2e-%d", os.Getpid())
	_ = os.Remove(node)
	if err := unix.Mknod(node, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatalf("mknod %s: %v", node, err)
	}
	t.Cleanup(func() { os.Remove(node) })
	return node
}

// TestCDIDevices: a CDI spec dropped into the running berthd's spec dir
// for a device made with mknod, with an env var and a mount, is picked
// up and injected by name, through ContainerConfig.cdi_devices and
// through the kubelet's cdi.k8s.io annotation. A broken spec and one with
// a device node outside /dev are reported and skipped; an unknown device
// and one of the rejected spec fail the creation and leave nothing.
func TestCDIDevices(t *testing.T) {
	e := startCtrEnv(t)
	node := mknodTestDevice(t)
	data := t.TempDir()
	writeTestFile(t, filepath.Join(data, "hello"), "hello from cdi\n")
	specDir := filepath.Join(e.d.Dir, "cdi")
	// Loaded (and watched) before any spec exists: the specs below are
	// picked up by the watch.
	waitExtInfo(t, e, "no CDI device yet", func(i extInfo) bool { return len(i.CDI.Devices) == 0 && len(i.CDI.SpecDirs) == 1 })
	writeTestFile(t, filepath.Join(specDir, "broken.yaml"), "cdiVersion: [not yaml\n")
	writeTestFile(t, filepath.Join(specDir, "evil.json"), `{"cdiVersion": "0.6.0", "kind": "berth.test/evil",
 "devices": [{"name": "passwd", "containerEdits": {"deviceNodes": [{"path": "/etc/passwd", "hostPath": "`+node+`"}]}}]}`)
	writeTestFile(t, filepath.Join(specDir, "e2e.json"), fmt.Sprintf(`{"cdiVersion": "0.6.0", "kind": "berth.test/e2e",
 "devices": [{"name": "null", "containerEdits": {
   "deviceNodes": [{"path": "/dev/berth-cdi", "hostPath": %q}],
   "env": ["BERTH_CDI_DEVICE=null"],
   "mounts": [{"hostPath": %q, "containerPath": "/cdi-data", "options": ["ro", "rbind"]}]}}]}`, node, data))
	info := waitExtInfo(t, e, "the e2e device and both bad specs", func(i extInfo) bool {
		return slices.Contains(i.CDI.Devices, "berth.test/e2e=null") && len(i.CDI.Errors) >= 2
	})
	if slices.Contains(info.CDI.Devices, "berth.test/evil=passwd") {
		t.Errorf("the spec with a device node outside /dev is listed: %v", info.CDI.Devices)
	}
	for _, f := range []string{"broken.yaml", "evil.json"} {
		if len(info.CDI.Errors[filepath.Join(specDir, f)]) == 0 {
			t.Errorf("berth info shows no error for %s: %v", f, info.CDI.Errors)
		}
	}
	if !strings.Contains(e.d.Log(), "CDI spec skipped") {
		t.Errorf("berthd logged no skipped CDI spec")
	}

	const probe = `test -c /dev/berth-cdi && echo dev-ok; echo "env=$BERTH_CDI_DEVICE"; cat /cdi-data/hello; ` +
		`echo x > /dev/berth-cdi && echo write-ok; touch /cdi-data/new 2>/dev/null || echo mount-ro`
	byField := e.config("cdi-field", "sleep", "3600")
	byField.CDIDevices = []*runtimeapi.CDIDevice{{Name: "berth.test/e2e=null"}}
	byAnnotation := e.config("cdi-annotation", "sleep", "3600")
	byAnnotation.Annotations = map[string]string{"cdi.k8s.io/berth-e2e": "berth.test/e2e=null"}
	for _, cfg := range []*runtimeapi.ContainerConfig{byField, byAnnotation} {
		id := e.run(t, cfg)
		r := e.exec(t, id, 10, "sh", "-c", probe)
		want := "dev-ok\nenv=null\nhello from cdi\nwrite-ok\nmount-ro\n"
		if got := string(r.GetStdout()); got != want || r.GetExitCode() != 0 {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want %q", cfg.Metadata.Name, r.GetExitCode(), got, r.GetStderr(), want)
		}
	}

	before := countContainers(t, e)
	unknown := e.config("cdi-unknown", "true")
	unknown.CDIDevices = []*runtimeapi.CDIDevice{{Name: "berth.test/e2e=nope"}}
	_, err := e.create(t, unknown)
	wantCode(t, err, codes.NotFound, "berth.test/e2e=nope")
	evil := e.config("cdi-evil", "true")
	evil.CDIDevices = []*runtimeapi.CDIDevice{{Name: "berth.test/evil=passwd"}}
	_, err = e.create(t, evil)
	wantCode(t, err, codes.FailedPrecondition, "outside /dev")
	if after := countContainers(t, e); after != before {
		t.Errorf("failed creations left containers: %d before, %d after", before, after)
	}
}

// TestOCIHooks: a hook JSON dropped into the watched hooks dir, matching
// an annotation, runs its prestart command for that container only (and
// for a container of a pod with the annotation); a broken hook file is
// reported and skipped; a removed hook no longer runs.
func TestOCIHooks(t *testing.T) {
	e := startCtrEnv(t)
	marks := t.TempDir()
	hookDir := filepath.Join(e.d.Dir, "hooks.d")
	waitExtInfo(t, e, "no hook yet", func(i extInfo) bool { return len(i.Hooks.Hooks) == 0 && len(i.Hooks.Dirs) == 1 })
	// The hook gets the container's state on stdin; it keeps one copy
	// per run.
	writeTestFile(t, filepath.Join(hookDir, "50-marker.json"), fmt.Sprintf(`{"version": "1.0.0",
 "hook": {"path": "/bin/sh", "args": ["sh", "-c", "cat > %s/state-$$.json"]},
 "when": {"annotations": {"^e2e\\.example\\.com/marker$": "^on$"}},
 "stages": ["prestart"]}`, marks))
	writeTestFile(t, filepath.Join(hookDir, "60-broken.json"), `{"version": "1.0.0", "hook": {"path": "/nonexistent/hook"}, "stages": ["prestart"]}`)
	info := waitExtInfo(t, e, "the marker hook and the broken one", func(i extInfo) bool {
		return len(i.Hooks.Hooks) == 1 && len(i.Hooks.Errors) == 1
	})
	if h := info.Hooks.Hooks[0]; h.Path != "/bin/sh" || !slices.Equal(h.Stages, []string{"prestart"}) {
		t.Errorf("hook in info: %+v", h)
	}

	marked := e.config("hooked", "sleep", "3600")
	marked.Annotations = map[string]string{"e2e.example.com/marker": "on"}
	other := e.config("unhooked", "sleep", "3600")
	other.Annotations = map[string]string{"e2e.example.com/marker": "off"}
	id := e.run(t, marked)
	e.run(t, other)
	files, err := filepath.Glob(filepath.Join(marks, "state-*.json"))
	if err != nil || len(files) != 1 {
		t.Fatalf("hook ran %d times (%v), want once", len(files), err)
	}
	var state struct {
		ID          string            `json:"id"`
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal([]byte(readFile(t, files[0])), &state); err != nil {
		t.Fatal(err)
	}
	if state.ID != id || state.Annotations["e2e.example.com/marker"] != "on" {
		t.Errorf("hook ran for %q (annotations %v), want %s", state.ID, state.Annotations, id)
	}

	// A container of a pod annotated so runs it too: hooks match the
	// pod's annotations, as in CRI-O.
	podCfg := podConfig("hookpod")
	podCfg.Annotations = map[string]string{"e2e.example.com/marker": "on"}
	podCfg.LogDirectory = e.logDir
	podID := runPod(t, e.d, podCfg)
	resp, err := e.d.Runtime.CreateContainer(ctxT(t, time.Minute), &runtimeapi.CreateContainerRequest{
		PodSandboxId: podID, SandboxConfig: podCfg, Config: e.config("in-annotated-pod", "sleep", "3600")})
	if err != nil {
		t.Fatal(err)
	}
	e.start(t, resp.GetContainerId())
	if files, _ = filepath.Glob(filepath.Join(marks, "state-*.json")); len(files) != 2 {
		t.Fatalf("container of the annotated pod: hook ran %d times in all, want 2", len(files))
	}

	// Removed from the dir, the hook no longer runs.
	if err := os.Remove(filepath.Join(hookDir, "50-marker.json")); err != nil {
		t.Fatal(err)
	}
	waitExtInfo(t, e, "the marker hook gone", func(i extInfo) bool { return len(i.Hooks.Hooks) == 0 })
	again := e.config("hooked-again", "sleep", "3600")
	again.Annotations = map[string]string{"e2e.example.com/marker": "on"}
	e.run(t, again)
	if files, _ := filepath.Glob(filepath.Join(marks, "state-*.json")); len(files) != 2 {
		t.Errorf("a removed hook ran: %d state files", len(files))
	}
}

// TestDefaultMounts: a mounts.conf entry appears read-only in every
// container; the info endpoint shows it.
func TestDefaultMounts(t *testing.T) {
	e := startCtrEnv(t)
	src := t.TempDir()
	writeTestFile(t, filepath.Join(src, "content"), "from the host\n")
	writeTestFile(t, filepath.Join(e.d.Dir, "mounts.conf"), "# default mounts\n"+src+":/run/berth-default\n")
	id := e.run(t, e.config("defmount", "sleep", "3600"))
	r := e.exec(t, id, 10, "sh", "-c", "cat /run/berth-default/content; touch /run/berth-default/x 2>&1 || echo refused; grep ' /run/berth-default ' /proc/mounts")
	out := string(r.GetStdout())
	if !strings.HasPrefix(out, "from the host\n") || !strings.Contains(out, "Read-only file system") || !strings.Contains(out, "refused") ||
		!strings.Contains(out, " ro,") {
		t.Errorf("default mount in the container: %q", out)
	}
	if _, err := os.Stat(filepath.Join(src, "x")); err == nil {
		t.Errorf("the container wrote to the host path")
	}
	code, body := httpUnixGet(t, metrics.InfoSocketPath(e.d.Socket), "/info")
	var info metrics.Info
	if err := json.Unmarshal([]byte(body), &info); code != http.StatusOK || err != nil || info.DefaultMounts == nil {
		t.Fatalf("/info: %d %v %s", code, err, body)
	}
	if m := info.DefaultMounts.Mounts; len(m) != 1 || m[0].Source != src || m[0].Destination != "/run/berth-default" {
		t.Errorf("/info default mounts: %+v", info.DefaultMounts)
	}

	// default_mounts_file is reloadable: after SIGHUP the next container
	// gets the other file's mounts.
	other := filepath.Join(e.d.Dir, "mounts-other.conf")
	writeTestFile(t, other, src+":/run/berth-other\n")
	e.d.WriteDropIn(t, "60-mounts.toml", fmt.Sprintf("[berth.runtime]\ndefault_mounts_file = %q\n", other))
	reloadAndWait(t, e.d)
	id = e.run(t, e.config("defmount-reloaded", "sleep", "3600"))
	r = e.exec(t, id, 10, "sh", "-c", "cat /run/berth-other/content; test -e /run/berth-default || echo old-gone")
	if got := string(r.GetStdout()); got != "from the host\nold-gone\n" {
		t.Errorf("after the reload: %q", got)
	}
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func countContainers(t *testing.T, e *ctrEnv) int {
	t.Helper()
	resp, err := e.d.Runtime.ListContainers(ctxT(t, 10*time.Second), &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.GetContainers())
}
