package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"sigs.k8s.io/yaml"

	"github.com/berth-cri/berth/internal/testutil"
)

// The CLI tests drive the built berth binary as an operator would, against
// a real berthd, and check what it prints and how it exits.

// cliEnv keeps the operator's own client config out of the tests.
func cliEnv(t *testing.T) []string {
	return append(os.Environ(), "CRI_CONFIG_FILE="+filepath.Join(t.TempDir(), "none.yaml"),
		"CONTAINER_RUNTIME_ENDPOINT=", "IMAGE_SERVICE_ENDPOINT=")
}

// cliCmd is an unstarted berth command against d.
func cliCmd(t *testing.T, d *testutil.Daemon, args ...string) *exec.Cmd {
	ep := "unix://" + d.Socket
	full := append([]string{"--runtime-endpoint", ep, "--image-endpoint", ep, "--config", d.ConfigFile}, args...)
	cmd := exec.Command(filepath.Join(binDir, "berth"), full...)
	cmd.Env = cliEnv(t)
	return cmd
}

// cliRun runs berth with stdin and returns its output and exit code.
func cliRun(t *testing.T, d *testutil.Daemon, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := cliCmd(t, d, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start berth: %v", err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("berth %s: %v", strings.Join(args, " "), err)
		}
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("berth %s did not finish", strings.Join(args, " "))
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

// cli runs berth and fails the test unless it succeeds.
func cli(t *testing.T, d *testutil.Daemon, args ...string) string {
	t.Helper()
	out, errOut, code := cliRun(t, d, "", args...)
	if code != 0 {
		t.Fatalf("berth %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// cliFail runs berth, wants exit code 1 and one "berth: " error line
// holding want, and returns stderr.
func cliFail(t *testing.T, d *testutil.Daemon, want string, args ...string) string {
	t.Helper()
	out, errOut, code := cliRun(t, d, "", args...)
	if code != 1 {
		t.Fatalf("berth %s: exit %d, want 1\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	if !strings.HasPrefix(errOut, "berth: ") || !strings.Contains(errOut, want) {
		t.Fatalf("berth %s: stderr %q, want a \"berth: \" message with %q", strings.Join(args, " "), errOut, want)
	}
	if strings.Contains(errOut, "rpc error: code =") {
		t.Errorf("berth %s: gRPC status not reduced to its message: %q", strings.Join(args, " "), errOut)
	}
	return errOut
}

// cliSkipUnimplemented skips while the daemon lacks an RPC the test needs.
func cliSkipUnimplemented(t *testing.T, d *testutil.Daemon, args ...string) {
	t.Helper()
	_, errOut, code := cliRun(t, d, "", args...)
	if code != 0 && strings.Contains(errOut, "not implemented") {
		t.Skipf("berthd does not implement this yet: %s", strings.TrimSpace(errOut))
	}
}

// cliTable splits a table into cells by its header's column offsets, and
// checks every row is aligned to them.
func cliTable(t *testing.T, out string) [][]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	header := lines[0]
	var starts []int
	for i := 0; i < len(header); i++ {
		if header[i] != ' ' && (i == 0 || (i >= 3 && header[i-3:i] == "   ")) {
			starts = append(starts, i)
		}
	}
	var rows [][]string
	for _, l := range lines {
		var cells []string
		for j, s := range starts {
			if s > len(l) || (s > 0 && s < len(l) && l[s-1] != ' ') {
				t.Fatalf("row %q is not aligned with header %q", l, header)
			}
			end := len(l)
			if j+1 < len(starts) {
				end = starts[j+1]
			}
			cells = append(cells, strings.TrimSpace(l[min(s, len(l)):min(end, len(l))]))
		}
		rows = append(rows, cells)
	}
	return rows
}

// cliDecode reads JSON (or YAML) output into a CRI message.
func cliDecode(t *testing.T, out string, m proto.Message) {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(out))
	if err != nil {
		t.Fatalf("output is neither JSON nor YAML: %v\n%s", err, out)
	}
	if err := protojson.Unmarshal(js, m); err != nil {
		t.Fatalf("output does not decode into %T: %v\n%s", m, err, out)
	}
}

// cliStatusDecode reads the status of inspect or inspectp, which prints
// times as crictl does (RFC 3339), into a CRI message.
func cliStatusDecode(t *testing.T, raw json.RawMessage, m proto.Message) {
	t.Helper()
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		t.Fatalf("status is not a JSON object: %v\n%s", err, raw)
	}
	for _, k := range []string{"createdAt", "startedAt", "finishedAt"} {
		s, ok := obj[k].(string)
		if !ok {
			continue
		}
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatalf("status %s %q is not an RFC 3339 time: %v", k, s, err)
		}
		obj[k] = "0"
		if !ts.IsZero() {
			obj[k] = fmt.Sprint(ts.UnixNano())
		}
	}
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	if err := protojson.Unmarshal(b, m); err != nil {
		t.Fatalf("status does not decode into %T: %v\n%s", m, err, raw)
	}
}

// cliIDs checks -q output: one full hex ID per line.
func cliIDs(t *testing.T, out string) []string {
	t.Helper()
	ids := strings.Fields(out)
	for _, id := range ids {
		if !regexp.MustCompile(`^(sha256:)?[0-9a-f]{12,64}$`).MatchString(id) {
			t.Fatalf("-q printed %q, not an ID:\n%s", id, out)
		}
	}
	return ids
}

// cliWrite writes a file under dir and returns its path.
func cliWrite(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// cliDaemon starts berthd with a CNI network and a registry holding a
// busybox image, and returns the image's reference.
func cliDaemon(t *testing.T) (*testutil.Daemon, *testutil.Registry, string) {
	t.Helper()
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	ref := reg.Ref("cli/busybox:1.0")
	reg.Push(t, "cli/busybox:1.0", testutil.BusyboxImage(t, testutil.ImageSpec{Labels: map[string]string{"cli": "yes"}}))
	d := testutil.NewDaemon(t, testutil.DaemonOptions{BinDir: binDir})
	d.WriteRegistriesConf(t, reg.RegistriesConf())
	d.Start(t)
	tn := newTestNet(t, d.Dir)
	writeConf(t, d, "10-test.conflist", tn.conflist("bridge"))
	waitNetworkReady(t, d, true)
	return d, reg, ref
}

func TestCLIRuntimeAndErrors(t *testing.T) {
	d := testutil.StartDaemon(t, testutil.DaemonOptions{BinDir: binDir})

	out := cli(t, d, "version")
	for _, want := range []string{"RuntimeName:       berth\n", "RuntimeApiVersion: v1\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("version lacks %q:\n%s", want, out)
		}
	}
	v := &runtimeapi.VersionResponse{}
	cliDecode(t, cli(t, d, "version", "-o", "json"), v)
	if v.RuntimeName != "berth" {
		t.Errorf("version -o json: %v", v)
	}

	var info struct {
		Status   json.RawMessage `json:"status"`
		Config   map[string]any  `json:"config"`
		Handlers json.RawMessage `json:"runtimeHandlers"`
	}
	if err := json.Unmarshal([]byte(cli(t, d, "info")), &info); err != nil {
		t.Fatalf("info is not JSON: %v", err)
	}
	st := &runtimeapi.RuntimeStatus{}
	if err := protojson.Unmarshal(info.Status, st); err != nil || len(st.Conditions) < 2 || info.Config == nil || len(info.Handlers) < 3 {
		t.Errorf("info: status %v (%v), config %v, handlers %s", st, err, info.Config != nil, info.Handlers)
	}
	var infoYAML map[string]any
	if err := yaml.Unmarshal([]byte(cli(t, d, "info", "-o", "yaml")), &infoYAML); err != nil || infoYAML["status"] == nil {
		t.Errorf("info -o yaml: %v %v", err, infoYAML)
	}

	// Errors: exit 1 and a plain message, whether from the runtime or berth.
	cliFail(t, d, `no image matches "feedbeef"`, "inspecti", "feedbeef")
	cliFail(t, d, `no pod matches "nosuchpod"`, "stopp", "nosuchpod")
	cliFail(t, d, "pull image 127.0.0.1:1/none:1", "pull", "127.0.0.1:1/none:1")
	cliFail(t, d, "unsupported output format", "pods", "-o", "xml")
	out, errOut, code := cliRun(t, d, "", "--runtime-endpoint", "unix:///nonexistent/berth.sock", "version")
	if code != 1 || !strings.Contains(errOut, "/nonexistent/berth.sock") {
		t.Errorf("unreachable runtime: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// The client config: crictl.yaml's endpoint is honoured.
	cfgFile := filepath.Join(t.TempDir(), "crictl.yaml")
	cmd := exec.Command(filepath.Join(binDir, "berth"), "--client-config", cfgFile, "config", "--set", "runtime-endpoint=unix://"+d.Socket)
	cmd.Env = cliEnv(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("config --set: %v: %s", err, b)
	}
	cmd = exec.Command(filepath.Join(binDir, "berth"), "--client-config", cfgFile, "version")
	cmd.Env = cliEnv(t)
	if b, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(b), "berth") {
		t.Errorf("version through crictl.yaml: %v: %s", err, b)
	}
	cmd = exec.Command(filepath.Join(binDir, "berth"), "version")
	cmd.Env = append(cliEnv(t), "CONTAINER_RUNTIME_ENDPOINT=unix://"+d.Socket)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("version through CONTAINER_RUNTIME_ENDPOINT: %v: %s", err, b)
	}

	unit := cli(t, d, "generate", "systemd", "--berthd", "/usr/bin/berthd")
	if !strings.Contains(unit, "ExecStart=/usr/bin/berthd --config "+d.ConfigFile+" $BERTH_OPTIONS\n") || !strings.Contains(unit, "\nType=notify\n") {
		t.Errorf("systemd unit:\n%s", unit)
	}
	// systemd's own parser accepts every line of the unit.
	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		file := filepath.Join(t.TempDir(), "berth.service")
		if err := os.WriteFile(file, []byte(cli(t, d, "generate", "systemd", "--berthd", filepath.Join(binDir, "berthd"))), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(analyze, "verify", file).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify: %v:\n%s", err, out)
		}
	}
	if out := cli(t, d, "completion", "bash"); !strings.Contains(out, "__start_berth") {
		t.Errorf("bash completion:\n%.200s", out)
	}
}

func TestCLIImages(t *testing.T) {
	d, reg, ref := cliDaemon(t)

	out := cli(t, d, "pull", ref)
	if !regexp.MustCompile(`^Image is up to date for \S+\n$`).MatchString(out) {
		t.Errorf("pull printed %q", out)
	}
	rows := cliTable(t, cli(t, d, "images"))
	if strings.Join(rows[0], "|") != "IMAGE|TAG|IMAGE ID|SIZE" || len(rows) != 2 || rows[1][0] != reg.Host+"/cli/busybox" || rows[1][1] != "1.0" || len(rows[1][2]) != 13 {
		t.Fatalf("images table: %q", rows)
	}
	shortID := rows[1][2]
	ids := cliIDs(t, cli(t, d, "images", "-q"))
	if len(ids) != 1 || !strings.HasPrefix(strings.TrimPrefix(ids[0], "sha256:"), shortID) {
		t.Errorf("images -q: %v, table id %s", ids, shortID)
	}
	if rows := cliTable(t, cli(t, d, "images", "--digests")); rows[0][2] != "DIGEST" || len(rows[1][2]) != 13 {
		t.Errorf("images --digests: %q", rows)
	}
	list := &runtimeapi.ListImagesResponse{}
	cliDecode(t, cli(t, d, "images", "-o", "json"), list)
	if len(list.Images) != 1 || list.Images[0].RepoTags[0] != ref {
		t.Errorf("images -o json: %v", list)
	}

	var inspected struct {
		Status json.RawMessage `json:"status"`
	}
	if err := json.Unmarshal([]byte(cli(t, d, "inspecti", shortID[:6])), &inspected); err != nil {
		t.Fatal(err)
	}
	img := &runtimeapi.Image{}
	if err := protojson.Unmarshal(inspected.Status, img); err != nil || img.Id != list.Images[0].Id {
		t.Errorf("inspecti by prefix: %v %v", img, err)
	}
	fs := &runtimeapi.ImageFsInfoResponse{}
	cliDecode(t, cli(t, d, "imagefsinfo"), fs)
	if len(fs.ImageFilesystems) == 0 || fs.ImageFilesystems[0].GetUsedBytes().GetValue() == 0 {
		t.Errorf("imagefsinfo: %v", fs)
	}

	// image copy: registry to an OCI layout, offline of berthd.
	layout := filepath.Join(t.TempDir(), "layout")
	cli(t, d, "image", "copy", "-q", "--insecure-policy", "--src-tls-verify=false", "docker://"+ref, "oci:"+layout+":copied")
	if b, err := os.ReadFile(filepath.Join(layout, "index.json")); err != nil || !strings.Contains(string(b), "copied") {
		t.Errorf("image copy left no OCI layout: %v %s", err, b)
	}

	if out := cli(t, d, "rmi", shortID[:8]); out != "Deleted: "+ref+"\n"+"Deleted: "+list.Images[0].RepoDigests[0]+"\n" {
		t.Errorf("rmi printed %q", out)
	}
	if out := cli(t, d, "images", "-q"); out != "" {
		t.Errorf("image left after rmi: %q", out)
	}
	cliFail(t, d, "give an IMAGE, --all or --prune", "rmi")
}

// cliPodYAML is a pod config in crictl's snake_case YAML.
func cliPodYAML(name, namespace, logDir string) string {
	return fmt.Sprintf(`metadata:
  name: %s
  namespace: %s
  uid: uid-%s-%s
  attempt: 0
hostname: %s-host
log_directory: %s
labels:
  app: %s
annotations:
  owner: cli-test
port_mappings:
- container_port: 8080
  host_port: 0
linux:
  security_context:
    namespace_options:
      pid: 1
`, name, namespace, namespace, name, name, logDir, name)
}

func TestCLIPods(t *testing.T) {
	d, _, _ := cliDaemon(t)
	dir := t.TempDir()
	podA := cliWrite(t, dir, "a.yaml", cliPodYAML("web", "one", filepath.Join(dir, "logs-a")))
	podB := cliWrite(t, dir, "b.yaml", cliPodYAML("web", "two", filepath.Join(dir, "logs-b")))
	podC := cliWrite(t, dir, "c.yaml", cliPodYAML("db", "one", filepath.Join(dir, "logs-c")))

	var ids []string
	for _, p := range []string{podA, podB, podC} {
		ids = append(ids, cliIDs(t, cli(t, d, "runp", p))...)
	}
	if len(ids) != 3 {
		t.Fatalf("runp printed %v", ids)
	}
	rows := cliTable(t, cli(t, d, "pods"))
	if strings.Join(rows[0], "|") != "POD ID|CREATED|STATE|NAME|NAMESPACE|ATTEMPT|RUNTIME" || len(rows) != 4 {
		t.Fatalf("pods table: %q", rows)
	}
	// Newest first, crictl's order.
	if rows[1][0] != ids[2][:13] || rows[1][2] != "Ready" || rows[1][3] != "db" || rows[1][4] != "one" || rows[1][5] != "0" {
		t.Errorf("pods row: %q", rows[1])
	}
	if got := cliIDs(t, cli(t, d, "pods", "-q", "--namespace", "^one$")); len(got) != 2 {
		t.Errorf("pods -q --namespace one: %v", got)
	}
	if got := cliIDs(t, cli(t, d, "pods", "-q", "--label", "app=db")); len(got) != 1 || got[0] != ids[2] {
		t.Errorf("pods --label: %v", got)
	}
	list := &runtimeapi.ListPodSandboxResponse{}
	cliDecode(t, cli(t, d, "pods", "-o", "yaml", "--name", "web"), list)
	if len(list.Items) != 2 || list.Items[0].Metadata.Name != "web" {
		t.Errorf("pods -o yaml: %v", list)
	}

	// Prefixes, names, and ambiguity with the candidates listed.
	var inspected struct {
		Status json.RawMessage `json:"status"`
		Info   map[string]any  `json:"info"`
	}
	if err := json.Unmarshal([]byte(cli(t, d, "inspectp", ids[0][:8])), &inspected); err != nil {
		t.Fatal(err)
	}
	st := &runtimeapi.PodSandboxStatus{}
	cliStatusDecode(t, inspected.Status, st)
	if st.Id != ids[0] || st.Labels["app"] != "web" {
		t.Errorf("inspectp: %v", st)
	}
	errOut := cliFail(t, d, `pod "web" is ambiguous`, "inspectp", "web")
	if !strings.Contains(errOut, ids[0]) || !strings.Contains(errOut, ids[1]) || strings.Contains(errOut, ids[2]) {
		t.Errorf("ambiguity error does not list exactly the two candidates:\n%s", errOut)
	}
	cli(t, d, "inspectp", "db")
	// generate kube reads berthd's pod record (containers: see cli_containers_test.go).
	kube := &corev1.Pod{}
	out, errOut, code := cliRun(t, d, "", "generate", "kube", "db")
	if code != 0 && strings.Contains(errOut, "not implemented") {
		t.Logf("generate kube needs container support: %s", errOut)
	} else if err := yaml.UnmarshalStrict([]byte(out), kube); err != nil || code != 0 {
		t.Fatalf("generate kube: exit %d, %v: %s", code, err, errOut)
	} else if kube.Name != "db" || kube.Namespace != "one" || kube.Labels["app"] != "db" || kube.Annotations["owner"] != "cli-test" ||
		kube.Spec.Hostname != "db-host" || kube.Spec.HostNetwork || kube.Spec.ShareProcessNamespace != nil {
		t.Errorf("generate kube of a pod: %+v", kube)
	}
	// statsp, once the stats RPCs are there.
	if out, errOut, code := cliRun(t, d, "", "statsp", "-o", "json"); code != 0 {
		if !strings.Contains(errOut, "not implemented") {
			t.Errorf("statsp: exit %d: %s", code, errOut)
		}
	} else {
		stats := &runtimeapi.ListPodSandboxStatsResponse{}
		cliDecode(t, out, stats)
		if len(stats.Stats) != 3 {
			t.Errorf("statsp -o json: %d pods", len(stats.Stats))
		}
		if rows := cliTable(t, cli(t, d, "statsp", "db")); strings.Join(rows[0], "|") != "POD|NAME|CPU %|MEM" || len(rows) != 2 || rows[1][1] != "db" {
			t.Errorf("statsp table: %q", rows)
		}
	}
	// Shell completion offers the pods' IDs with their names.
	if out := cli(t, d, "__complete", "inspectp", ""); !strings.Contains(out, ids[2][:13]+"\tone/db") {
		t.Errorf("completion of inspectp:\n%s", out)
	}

	if out := cli(t, d, "stopp", ids[0][:10]); out != "Stopped sandbox "+ids[0]+"\n" {
		t.Errorf("stopp printed %q", out)
	}
	if got := cliIDs(t, cli(t, d, "pods", "-q", "--state", "notready")); len(got) != 1 || got[0] != ids[0] {
		t.Errorf("pods --state notready: %v", got)
	}
	cliFail(t, d, "is ready: stop it first or use --force", "rmp", ids[1])
	if out := cli(t, d, "rmp", ids[0]); out != "Removed sandbox "+ids[0]+"\n" {
		t.Errorf("rmp printed %q", out)
	}
	cli(t, d, "rmp", "-f", "-a")
	if out := cli(t, d, "pods", "-q"); out != "" {
		t.Errorf("pods left after rmp -a -f: %q", out)
	}

	// port-forward reaches the pod's network namespace (streaming server).
	cliPortForward(t, d, podA)
}

// cliPortForward forwards a local port to a listener inside a pod.
func cliPortForward(t *testing.T, d *testutil.Daemon, podFile string) {
	t.Helper()
	id := strings.TrimSpace(cli(t, d, "runp", podFile))
	defer cli(t, d, "rmp", "-f", id)
	_, info := podStatus(t, d, id)
	srv := exec.Command("nsenter", "--net="+info.NetNS, "/bin/busybox", "nc", "-ll", "-p", "8080", "-e", "/bin/echo", "hello-pf")
	if err := srv.Start(); err != nil {
		t.Skipf("no listener in the pod: %v", err)
	}
	defer srv.Process.Kill()
	port := freePort(t)
	pf := cliCmd(t, d, "port-forward", id[:12], fmt.Sprintf("%d:8080", port))
	var out bytes.Buffer
	pf.Stdout, pf.Stderr = &out, &out
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		pf.Process.Signal(os.Interrupt)
		pf.Wait()
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := cliDial(fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil && strings.Contains(got, "hello-pf") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("port-forward never answered: %v %q; berth said %q", err, got, out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// cliDial reads what a TCP server says before it closes.
func cliDial(addr string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(conn)
	return string(b), err
}
