package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"sigs.k8s.io/yaml"
)

// berthRun runs the command tree in-process against endpoint.
func berthRun(ctx context.Context, endpoint string, args ...string) (string, string, error) {
	root := newRoot(&globals{})
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(""))
	root.SetArgs(append([]string{"--runtime-endpoint", endpoint, "--client-config", "/nonexistent/crictl.yaml", "--timeout", "10s"}, args...))
	err := root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

func berthOK(t *testing.T, ep string, args ...string) string {
	t.Helper()
	out, errOut, err := berthRun(context.Background(), ep, args...)
	if err != nil {
		t.Fatalf("berth %s: %v (stderr %q)", strings.Join(args, " "), plainError(err), errOut)
	}
	return out
}

func berthErr(t *testing.T, ep, want string, args ...string) {
	t.Helper()
	_, _, err := berthRun(context.Background(), ep, args...)
	if err == nil || !strings.Contains(plainError(err), want) {
		t.Fatalf("berth %s: error %v, want one with %q", strings.Join(args, " "), err, want)
	}
}

// TestCommandFlow drives the commands through a pod's and a container's
// life against the fake runtime.
func TestCommandFlow(t *testing.T) {
	f, ep := startFake(t)
	dir := t.TempDir()
	pod := filepath.Join(dir, "pod.yaml")
	ctr := filepath.Join(dir, "ctr.yaml")
	os.WriteFile(pod, []byte(`metadata: {name: web, namespace: shop, uid: u1}
hostname: web
log_directory: `+filepath.Join(dir, "logs")+`
labels: {app: web}
port_mappings: [{container_port: 80, host_port: 8080}]
`), 0o644)
	os.WriteFile(ctr, []byte(`metadata: {name: app}
image: {image: "busybox:1"}
command: [sleep]
args: ["1000"]
envs: [{key: MODE, value: prod}]
log_path: app.log
linux: {resources: {memory_limit_in_bytes: 67108864}}
`), 0o644)

	// run pulls the missing image, then makes the pod and the container.
	id := strings.TrimSpace(berthOK(t, ep, "run", ctr, pod))
	if _, ok := f.get(id); !ok {
		t.Fatalf("run printed %q, not a container ID", id)
	}
	podID := strings.TrimSpace(berthOK(t, ep, "pods", "-q"))
	if out := berthOK(t, ep, "ps", "--no-trunc"); !strings.Contains(out, id) || !strings.Contains(out, "Running") || !strings.Contains(out, "busybox:1") {
		t.Errorf("ps:\n%s", out)
	}
	if out := berthOK(t, ep, "ps", "-q", "--pod", "web"); out != id+"\n" {
		t.Errorf("ps --pod by name: %q", out)
	}
	if out := berthOK(t, ep, "ps", "-q", "--image", "busybox:1"); out != id+"\n" {
		t.Errorf("ps --image: %q", out)
	}

	// exec -s: output and exit code.
	if out := berthOK(t, ep, "exec", "-s", id[:5], "echo", "hi"); out != "echo hi\n" {
		t.Errorf("exec -s: %q", out)
	}
	_, errOut, err := berthRun(context.Background(), ep, "exec", "-s", "app", "exit", "4")
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 4 || errOut != "exiting\n" {
		t.Errorf("exec -s exit 4: %v %q", err, errOut)
	}

	// logs.
	out, errOut, err := berthRun(context.Background(), ep, "logs", id[:6])
	if err != nil || out != "started app\n" || errOut != "warming up\n" {
		t.Errorf("logs: %q %q %v", out, errOut, err)
	}

	// update overlays on the current resources; stats shows the rate.
	berthOK(t, ep, "update", "--cpu-quota", "20000", "--cpu-period", "100000", id)
	if c, _ := f.get(id); c.status.Resources.Linux.CpuQuota != 20000 || c.status.Resources.Linux.MemoryLimitInBytes != 64<<20 {
		t.Errorf("after update: %v", c.status.Resources.Linux)
	}
	if out := berthOK(t, ep, "stats"); !regexp.MustCompile(`app\s+12\.50\s+2\.5MB\s+4\.1kB\s+3\s+0B`).MatchString(out) {
		t.Errorf("stats:\n%s", out)
	}

	// generate kube reads the configs from the verbose info.
	kube := berthOK(t, ep, "generate", "kube", podID[:4])
	p := &corev1.Pod{}
	if err := yaml.UnmarshalStrict([]byte(kube), p); err != nil {
		t.Fatalf("%v\n%s", err, kube)
	}
	c := p.Spec.Containers[0]
	if p.Name != "web" || p.Namespace != "shop" || c.Image != "busybox:1" || c.Command[0] != "sleep" || c.Args[0] != "1000" ||
		c.Env[0].Value != "prod" || c.Ports[0].HostPort != 8080 || c.Resources.Limits.Memory().Value() != 64<<20 {
		t.Errorf("generate kube:\n%s", kube)
	}

	// create in the existing pod, without pulling.
	ctr2 := filepath.Join(dir, "ctr2.json")
	os.WriteFile(ctr2, []byte(`{"metadata": {"name": "side"}, "image": {"image": "busybox:1"}}`), 0o644)
	id2 := strings.TrimSpace(berthOK(t, ep, "create", podID[:6], ctr2, pod))
	if out := berthOK(t, ep, "ps", "-q", "-a", "--state", "created"); out != id2+"\n" {
		t.Errorf("ps --state created: %q", out)
	}
	berthErr(t, ep, "is running: stop it first or use --force", "rm", id)
	if out := berthOK(t, ep, "rm", "-f", id, id2); out != id+"\n"+id2+"\n" {
		t.Errorf("rm -f: %q", out)
	}
	berthErr(t, ep, `no container matches "`+id[:8]+`"`, "start", id[:8])

	// rmi refuses nothing here; --prune keeps images in use.
	berthOK(t, ep, "create", podID, ctr2, pod)
	if out := berthOK(t, ep, "rmi", "--prune"); out != "" {
		t.Errorf("rmi --prune removed an image in use: %q", out)
	}
	berthOK(t, ep, "rmp", "-f", "-a")
	if out := berthOK(t, ep, "rmi", "--prune"); !strings.HasPrefix(out, "Deleted: busybox:1\n") {
		t.Errorf("rmi --prune: %q", out)
	}
	berthErr(t, ep, "access denied", "pull", "denied/image")
}

func TestEventsStream(t *testing.T) {
	f, ep := startFake(t)
	f.events <- &runtimeapi.ContainerEventResponse{ContainerId: "c1", ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, CreatedAt: 5}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	out, _, err := berthRun(ctx, ep, "events")
	if err != nil {
		t.Fatal(err)
	}
	var raw json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	ev := &runtimeapi.ContainerEventResponse{}
	if err := protojson.Unmarshal(raw, ev); err != nil || ev.ContainerId != "c1" || ev.ContainerEventType != runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT {
		t.Errorf("event %v %v", ev, err)
	}
}

// Every spelling of the endpoint reaches the socket, a path relative to
// the working directory too (gRPC takes "unix://x.sock" as a host).
func TestEndpointSpellings(t *testing.T) {
	_, ep := startFake(t)
	sock := strings.TrimPrefix(ep, "unix://")
	t.Chdir(filepath.Dir(sock))
	for _, e := range []string{ep, sock, "cri.sock", "./cri.sock", "unix:cri.sock"} {
		if out := berthOK(t, e, "pods", "-q"); out != "" {
			t.Errorf("endpoint %q: pods %q", e, out)
		}
	}
}
