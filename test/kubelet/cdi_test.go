//go:build kubelet

package kubelet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// testCDI: two device plugins (test/kubelet/build/deviceplugin) offer
// berth.test/field and berth.test/annotation; the kubelet passes the CDI
// device the first allocates in ContainerConfig.cdi_devices and the
// second's as a cdi.k8s.io container annotation, and berth injects both
// from the CDI spec in its spec dir: the device nodes and env vars are
// there in the container. A CDI annotation on the pod itself is not a
// container annotation (the kubelet does not pass it down), so a pod
// cannot help itself to a device that way.
func testCDI(t *testing.T, e *env) {
	node := fmt.Sprintf("/dev/berth-kubelet-%d", os.Getpid())
	_ = os.Remove(node)
	if err := unix.Mknod(node, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatalf("mknod %s: %v", node, err)
	}
	t.Cleanup(func() { os.Remove(node) })
	spec := fmt.Sprintf(`{"cdiVersion": "0.6.0", "kind": "berth.test/kubelet", "devices": [
 {"name": "field", "containerEdits": {"deviceNodes": [{"path": "/dev/berth-cdi-field", "hostPath": %[1]q}], "env": ["BERTH_CDI_FIELD=yes"]}},
 {"name": "annotation", "containerEdits": {"deviceNodes": [{"path": "/dev/berth-cdi-annotation", "hostPath": %[1]q}], "env": ["BERTH_CDI_ANNOTATION=yes"]}}]}`, node)
	if err := os.WriteFile(filepath.Join(e.d.Dir, "cdi", "kubelet.json"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}

	// A pod admitted before the kubelet counts a device healthy is
	// rejected for good (a static pod is not retried): each plugin says
	// when the kubelet's pod-resources API lists its device.
	start := time.Now()
	podResources := filepath.Join(e.dir, "root", "pod-resources", "kubelet.sock")
	field := startDevicePlugin(t, devicePluginBin, "--resource", "berth.test/field", "--cdi", "berth.test/kubelet=field",
		"--socket", "berth-field.sock", "--pod-resources", podResources)
	annotation := startDevicePlugin(t, devicePluginBin, "--resource", "berth.test/annotation", "--cdi", "berth.test/kubelet=annotation",
		"--annotation", "cdi.k8s.io/berth-e2e_dev0", "--socket", "berth-annotation.sock", "--pod-resources", podResources)
	for _, p := range []*devicePlugin{field, annotation} {
		p.waitLog(t, "allocatable "+p.resource, time.Minute)
	}
	t.Logf("devices allocatable after %v", time.Since(start).Round(time.Millisecond))

	const probe = `for d in field annotation; do test -c /dev/berth-cdi-$d && echo "dev-$d"; done; ` +
		`echo "env field=$BERTH_CDI_FIELD annotation=$BERTH_CDI_ANNOTATION"; exec sleep 3600`
	c := ctr("main", probe)
	c.Resources.Limits = corev1.ResourceList{"berth.test/field": resource.MustParse("1"), "berth.test/annotation": resource.MustParse("1")}
	e.writeManifest(t, newPod("cdi", c))
	t.Cleanup(func() { e.removeManifest(t, "cdi") })
	p := e.waitPod(t, "cdi", 3*time.Minute, running("main"))
	e.waitLogs(t, "cdi", "main", false, 30*time.Second, "dev-field\ndev-annotation\nenv field=yes annotation=yes\n")

	// What reached the CRI: the annotation form as a container
	// annotation, the other through cdi_devices (no annotation for it).
	id := strings.TrimPrefix(cstatus(p, "main").ContainerID, "berth://")
	annotations := specAnnotations(t, e, id)
	if annotations["cdi.k8s.io/berth-e2e_dev0"] != "berth.test/kubelet=annotation" {
		t.Errorf("container annotations %v: no cdi.k8s.io annotation from the device plugin", annotations)
	}
	for k, v := range annotations {
		if strings.Contains(v, "berth.test/kubelet=field") {
			t.Errorf("annotation %s=%s: the cdi_devices device came as an annotation", k, v)
		}
	}

	sneaky := newPod("cdi-pod-annotation", ctr("main", "test -e /dev/berth-cdi-field && echo has-device || echo no-device; exec sleep 3600"))
	sneaky.Annotations = map[string]string{"cdi.k8s.io/sneaky": "berth.test/kubelet=field"}
	e.writeManifest(t, sneaky)
	t.Cleanup(func() { e.removeManifest(t, "cdi-pod-annotation") })
	e.waitPod(t, "cdi-pod-annotation", 3*time.Minute, running("main"))
	e.waitLogs(t, "cdi-pod-annotation", "main", false, 30*time.Second, "no-device\n")
}

// devicePlugin is a running test device plugin and its log.
type devicePlugin struct {
	resource string
	mu       sync.Mutex
	log      bytes.Buffer
}

func (p *devicePlugin) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.Write(b)
}

func (p *devicePlugin) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *devicePlugin) waitLog(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !strings.Contains(p.logText(), want); {
		if time.Now().After(deadline) {
			t.Fatalf("device plugin of %s: no %q after %v; log:\n%s", p.resource, want, timeout, p.logText())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startDevicePlugin starts the plugin with args, the first two of which
// are --resource NAME.
func startDevicePlugin(t *testing.T, bin string, args ...string) *devicePlugin {
	t.Helper()
	p := &devicePlugin{resource: args[1]}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = p, p
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("device plugin %v log:\n%s", args, p.logText())
		}
	})
	return p
}

// specAnnotations are the annotations of the container's OCI spec, as
// berthd's verbose ContainerStatus shows it: the container annotations
// the kubelet sent.
func specAnnotations(t *testing.T, e *env, id string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := e.d.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		RuntimeSpec struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(resp.GetInfo()["info"]), &info); err != nil {
		t.Fatal(err)
	}
	return info.RuntimeSpec.Annotations
}
