package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"sigs.k8s.io/yaml"

	"github.com/berth-cri/berth/internal/testutil"
)

// cliTicker prints numbered lines to stdout and stderr, ten a second.
const cliTicker = `i=0; while true; do echo "line $i"; echo "err $i" >&2; i=$((i+1)); sleep 0.1; done`

// cliCtrYAML is a container config in crictl's YAML.
func cliCtrYAML(name, image, script string) string {
	return fmt.Sprintf(`metadata: {name: %s}
image: {image: %q}
command: [/bin/sh, -c]
args: [%q]
working_dir: /tmp
envs:
- {key: MODE, value: cli test}
log_path: %s.log
`, name, image, script, name)
}

// cliContainerSetup starts berthd, pulls the image through the CLI and
// writes a pod and a container config; it skips while berthd has no
// container support.
func cliContainerSetup(t *testing.T, script string) (d *testutil.Daemon, podFile, ctrFile, ref string) {
	t.Helper()
	d, _, ref = cliDaemon(t)
	cliSkipUnimplemented(t, d, "ps")
	cli(t, d, "pull", ref)
	dir := t.TempDir()
	podFile = cliWrite(t, dir, "pod.yaml", cliPodYAML("web", "cli", filepath.Join(dir, "logs")))
	ctrFile = cliWrite(t, dir, "ctr.yaml", cliCtrYAML("app", ref, script))
	return d, podFile, ctrFile, ref
}

// cliState is a container's state as inspect reports it.
func cliState(t *testing.T, d *testutil.Daemon, ref string) *runtimeapi.ContainerStatus {
	t.Helper()
	var doc struct {
		Status json.RawMessage `json:"status"`
	}
	if err := json.Unmarshal([]byte(cli(t, d, "inspect", ref)), &doc); err != nil {
		t.Fatal(err)
	}
	st := &runtimeapi.ContainerStatus{}
	cliStatusDecode(t, doc.Status, st)
	return st
}

func TestCLIContainers(t *testing.T) {
	d, podFile, ctrFile, ref := cliContainerSetup(t, cliTicker)

	id := cliIDs(t, cli(t, d, "run", ctrFile, podFile))[0]
	podID := cliIDs(t, cli(t, d, "pods", "-q"))[0]
	rows := cliTable(t, cli(t, d, "ps"))
	want := []string{"CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID", "POD", "NAMESPACE"}
	if strings.Join(rows[0], "|") != strings.Join(want, "|") || len(rows) != 2 {
		t.Fatalf("ps table: %q", rows)
	}
	// IMAGE is the name, or (as containerd reports it) the image ID cut short.
	if r := rows[1]; r[0] != id[:13] || (r[1] != ref && !regexp.MustCompile(`^[0-9a-f]{13}$`).MatchString(r[1])) || r[3] != "Running" || r[4] != "app" || r[5] != "0" || r[6] != podID[:13] || r[7] != "web" || r[8] != "cli" {
		t.Errorf("ps row: %q", r)
	}
	if got := cliIDs(t, cli(t, d, "ps", "-q", "--pod", podID[:6], "--name", "^app$")); len(got) != 1 || got[0] != id {
		t.Errorf("ps -q --pod: %v", got)
	}
	list := &runtimeapi.ListContainersResponse{}
	cliDecode(t, cli(t, d, "ps", "-a", "-o", "json"), list)
	if len(list.Containers) != 1 || list.Containers[0].Id != id || list.Containers[0].State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("ps -o json: %v", list)
	}
	if st := cliState(t, d, id[:7]); st.Id != id || st.Metadata.Name != "app" || st.LogPath == "" {
		t.Errorf("inspect: %v", st)
	}

	// exec: sync and streamed, exit codes passed through.
	if out := cli(t, d, "exec", "-s", id[:8], "echo", "hi"); out != "hi\n" {
		t.Errorf("exec -s printed %q", out)
	}
	out, errOut, code := cliRun(t, d, "", "exec", "--sync", "app", "sh", "-c", "echo out; echo err >&2; exit 3")
	if out != "out\n" || errOut != "err\n" || code != 3 {
		t.Errorf("exec -s exit 3: %q %q %d", out, errOut, code)
	}
	out, errOut, code = cliRun(t, d, "piped input\n", "exec", "-i", id[:8], "cat")
	if out != "piped input\n" || code != 0 {
		t.Errorf("exec -i cat: %q %q %d", out, errOut, code)
	}
	if _, _, code := cliRun(t, d, "", "exec", id[:8], "sh", "-c", "exit 5"); code != 5 {
		t.Errorf("exec exit 5: got %d", code)
	}

	// logs: both streams, --tail, --timestamps.
	time.Sleep(500 * time.Millisecond)
	out, errOut, code = cliRun(t, d, "", "logs", "--tail", "4", id[:8])
	if code != 0 || !regexp.MustCompile(`^(line \d+\n){1,4}$`).MatchString(out) || !regexp.MustCompile(`^(err \d+\n){1,4}$`).MatchString(errOut) {
		t.Errorf("logs --tail 4: exit %d stdout %q stderr %q", code, out, errOut)
	}
	out, errOut, _ = cliRun(t, d, "", "logs", "--timestamps", "--tail", "1", "app")
	if out += errOut; !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\S+ (line|err) \d+\n$`).MatchString(out) {
		t.Errorf("logs --timestamps: %q", out)
	}

	cliUpdateAndStats(t, d, id)

	// create + start + stop + rm in the running pod.
	ctr2 := cliWrite(t, t.TempDir(), "ctr2.yaml", cliCtrYAML("second", ref, "sleep 1000"))
	id2 := cliIDs(t, cli(t, d, "create", podID[:10], ctr2, podFile))[0]
	if st := cliState(t, d, id2); st.State != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Errorf("after create: %v", st.State)
	}
	if out := cli(t, d, "start", id2[:9]); out != id2+"\n" {
		t.Errorf("start printed %q", out)
	}
	if out := cli(t, d, "stop", "-t", "0", "second"); out != id2+"\n" {
		t.Errorf("stop printed %q", out)
	}
	if got := cliIDs(t, cli(t, d, "ps", "-q", "--state", "exited")); len(got) != 1 || got[0] != id2 {
		t.Errorf("ps --state exited: %v", got)
	}
	if out := cli(t, d, "rm", id2); out != id2+"\n" {
		t.Errorf("rm printed %q", out)
	}
	cliFail(t, d, "is running: stop it first or use --force", "rm", id)
	cli(t, d, "rm", "-f", id)
	if out := cli(t, d, "ps", "-a", "-q"); out != "" {
		t.Errorf("containers left: %q", out)
	}
	cliFail(t, d, `no container matches "`+id[:12]+`"`, "inspect", id[:12])
	cli(t, d, "rm", "-f", "-a")
	cli(t, d, "rmp", "-f", "-a")
}

// cliUpdateAndStats checks update and stats on a running container.
func cliUpdateAndStats(t *testing.T, d *testutil.Daemon, id string) {
	t.Helper()
	cliSkipUnimplementedPart := func(args ...string) bool {
		_, errOut, code := cliRun(t, d, "", args...)
		if code != 0 && strings.Contains(errOut, "not implemented") {
			t.Logf("berthd does not implement %s yet", args[0])
			return true
		}
		return false
	}
	if !cliSkipUnimplementedPart("update", "--memory", "96Mi", id) {
		if out := cli(t, d, "update", "--memory", "64Mi", id[:8]); out != id+"\n" {
			t.Errorf("update printed %q", out)
		}
		if st := cliState(t, d, id); st.GetResources().GetLinux().GetMemoryLimitInBytes() != 64<<20 {
			t.Errorf("memory after update: %v", st.GetResources())
		}
	}
	if !cliSkipUnimplementedPart("stats", "-o", "json") {
		stats := &runtimeapi.ListContainerStatsResponse{}
		cliDecode(t, cli(t, d, "stats", "-o", "json"), stats)
		if len(stats.Stats) != 1 || stats.Stats[0].GetAttributes().GetId() != id {
			t.Errorf("stats -o json: %v", stats)
		}
		rows := cliTable(t, cli(t, d, "stats", "--id", id[:8]))
		if strings.Join(rows[0], "|") != "CONTAINER|NAME|CPU %|MEM|DISK|INODES|SWAP" || len(rows) != 2 || rows[1][1] != "app" {
			t.Errorf("stats table: %q", rows)
		}
	}
}

// TestCLILogsFollowReopen follows a container's log with logs -f while
// the log is rotated the kubelet's way (rename, then ReopenContainerLog),
// and checks logs -f goes on to the new file and ends when the container
// stops.
func TestCLILogsFollowReopen(t *testing.T) {
	d, podFile, ctrFile, _ := cliContainerSetup(t, `i=0; while true; do echo "line $i"; i=$((i+1)); sleep 0.05; done`)
	id := cliIDs(t, cli(t, d, "run", ctrFile, podFile))[0]
	logPath := cliState(t, d, id).LogPath

	cmd := cliCmd(t, d, "logs", "-f", id[:8])
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan int, 10000)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "line "))
			if err != nil {
				n = -1
			}
			lines <- n
		}
	}()
	next := 0
	read := func(until int) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for next <= until {
			select {
			case n, ok := <-lines:
				if !ok {
					t.Fatalf("logs -f ended early at line %d; stderr %q", next, stderr.String())
				}
				if n != next {
					t.Fatalf("logs -f printed line %d, want %d (nothing lost or repeated)", n, next)
				}
				next++
			case <-deadline:
				t.Fatalf("logs -f stuck before line %d; stderr %q", next, stderr.String())
			}
		}
	}
	read(10)
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Runtime.ReopenContainerLog(ctxT(t, 10*time.Second), &runtimeapi.ReopenContainerLogRequest{ContainerId: id}); err != nil {
		t.Fatalf("ReopenContainerLog: %v", err)
	}
	reopenedAt := next
	read(reopenedAt + 30)
	if b, err := os.ReadFile(logPath); err != nil || !strings.Contains(string(b), fmt.Sprintf("line %d\n", next-1)) {
		t.Fatalf("new log file does not hold the lines logs -f printed after the reopen: %v", err)
	}
	cli(t, d, "stop", "-t", "0", id)
	done := make(chan error, 1)
	go func() {
		for range lines {
		}
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("logs -f: %v; stderr %q", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("logs -f did not end after the container stopped")
	}
	cli(t, d, "rm", "-f", "-a")
	cli(t, d, "rmp", "-f", "-a")
}

func TestCLIGenerateKube(t *testing.T) {
	d, podFile, _, ref := cliContainerSetup(t, "sleep 1000")
	ctr := cliWrite(t, t.TempDir(), "kube.yaml", fmt.Sprintf(`metadata: {name: server}
image: {image: %q}
command: [/bin/sh, -c]
args: ["sleep 1000"]
working_dir: /tmp
envs:
- {key: MODE, value: prod}
- {key: EMPTY, value: ""}
log_path: server.log
linux:
  resources: {cpu_period: 100000, cpu_quota: 50000, cpu_shares: 256, memory_limit_in_bytes: 134217728}
  security_context:
    run_as_user: {value: 1000}
    capabilities: {add_capabilities: [NET_ADMIN], drop_capabilities: [KILL]}
    readonly_rootfs: true
    no_new_privs: true
`, ref))
	cli(t, d, "run", ctr, podFile)
	out := cli(t, d, "generate", "kube", "web")
	pod := &corev1.Pod{}
	if err := yaml.UnmarshalStrict([]byte(out), pod); err != nil {
		t.Fatalf("generate kube output is not a v1 Pod: %v\n%s", err, out)
	}
	if pod.APIVersion != "v1" || pod.Kind != "Pod" || pod.Name != "web" || pod.Namespace != "cli" ||
		pod.Labels["app"] != "web" || pod.Annotations["owner"] != "cli-test" || pod.Spec.Hostname != "web-host" {
		t.Errorf("pod meta/spec:\n%s", out)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("containers:\n%s", out)
	}
	c := pod.Spec.Containers[0]
	// A runtime that keeps only the OCI spec gives the whole argv as the
	// command: the same process either way.
	argv := strings.Join(append(append([]string{}, c.Command...), c.Args...), " ")
	if c.Name != "server" || c.Image != ref || argv != "/bin/sh -c sleep 1000" || c.WorkingDir != "/tmp" {
		t.Errorf("container basics:\n%s", out)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if v, ok := env["EMPTY"]; env["MODE"] != "prod" || !ok || v != "" {
		t.Errorf("env %v:\n%s", c.Env, out)
	}
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 8080 || c.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("ports %v:\n%s", c.Ports, out)
	}
	cpu, mem := c.Resources.Limits[corev1.ResourceCPU], c.Resources.Limits[corev1.ResourceMemory]
	req := c.Resources.Requests[corev1.ResourceCPU]
	if cpu.Cmp(resource.MustParse("500m")) != 0 || mem.Cmp(resource.MustParse("128Mi")) != 0 || req.Cmp(resource.MustParse("250m")) != 0 {
		t.Errorf("resources %v:\n%s", c.Resources, out)
	}
	sc := c.SecurityContext
	if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 1000 || sc.Capabilities == nil || len(sc.Capabilities.Add) != 1 ||
		sc.Capabilities.Add[0] != "NET_ADMIN" || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "KILL" || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation {
		t.Errorf("security context %+v:\n%s", sc, out)
	}
	cli(t, d, "rm", "-f", "-a")
	cli(t, d, "rmp", "-f", "-a")
}

// TestCLIEventsAndAttach watches events while a container is made and
// started, then attaches to its output.
func TestCLIEventsAndAttach(t *testing.T) {
	d, podFile, ctrFile, _ := cliContainerSetup(t, cliTicker)
	events := cliCmd(t, d, "events", "-o", "json")
	stdout, err := events.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var evErr bytes.Buffer
	events.Stderr = &evErr
	if err := events.Start(); err != nil {
		t.Fatal(err)
	}
	defer events.Process.Kill()
	time.Sleep(300 * time.Millisecond)
	id := cliIDs(t, cli(t, d, "run", ctrFile, podFile))[0]

	seen := map[runtimeapi.ContainerEventType]bool{}
	dec := json.NewDecoder(stdout)
	deadline := time.Now().Add(15 * time.Second)
	for !seen[runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT] && time.Now().Before(deadline) {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			events.Wait()
			if strings.Contains(evErr.String(), "not implemented") {
				t.Skipf("berthd does not implement events yet: %s", evErr.String())
			}
			t.Fatalf("events output: %v; stderr %q", err, evErr.String())
		}
		ev := &runtimeapi.ContainerEventResponse{}
		if err := protojson.Unmarshal(raw, ev); err != nil {
			t.Fatalf("event does not decode: %v\n%s", err, raw)
		}
		if ev.ContainerId == id {
			seen[ev.ContainerEventType] = true
		}
	}
	if !seen[runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT] || !seen[runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT] {
		t.Errorf("events for %s: %v", id, seen)
	}

	attach := cliCmd(t, d, "attach", id[:8])
	out, err := attach.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := attach.Start(); err != nil {
		t.Fatal(err)
	}
	defer attach.Process.Kill()
	line, err := bufio.NewReader(io.LimitReader(out, 1<<20)).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "line ") {
		t.Errorf("attach read %q, %v", line, err)
	}
	cli(t, d, "rm", "-f", "-a")
	cli(t, d, "rmp", "-f", "-a")
}
