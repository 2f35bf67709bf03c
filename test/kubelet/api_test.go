//go:build kubelet

package kubelet

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// client talks to the kubelet: plain HTTP on the read-only port, HTTPS
// with its self-signed certificate on the main port.
var client = &http.Client{
	Timeout:   20 * time.Second,
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
}

func httpGet(u string) ([]byte, error) {
	resp, err := client.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	return b, nil
}

// pods is the read-only port's /pods.
func (e *env) pods() ([]corev1.Pod, error) {
	b, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/pods", e.roPort))
	if err != nil {
		return nil, err
	}
	var list corev1.PodList
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("decode /pods: %w", err)
	}
	return list.Items, nil
}

// pod returns the static pod made from manifest name, or nil.
func (e *env) pod(name string) (*corev1.Pod, error) {
	pods, err := e.pods()
	if err != nil {
		return nil, err
	}
	for i := range pods {
		if pods[i].Name == name+"-"+nodeName {
			return &pods[i], nil
		}
	}
	return nil, nil
}

// logs reads /containerLogs of a container of the static pod name.
func (e *env) logs(name, container string, previous bool) (string, error) {
	u := fmt.Sprintf("https://127.0.0.1:%d/containerLogs/default/%s-%s/%s", e.port, name, nodeName, container)
	if previous {
		u += "?previous=true"
	}
	b, err := httpGet(u)
	return string(b), err
}

// run executes cmd (split on spaces) in a container through the kubelet's
// /run endpoint (the runtime's ExecSync) and returns its output.
func (e *env) run(name, container, cmd string) (string, error) {
	u := fmt.Sprintf("https://127.0.0.1:%d/run/default/%s-%s/%s?cmd=%s", e.port, name, nodeName, container, url.QueryEscape(cmd))
	resp, err := client.Post(u, "", nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("POST %s: %s: %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	return string(b), err
}

// summary is the part of the kubelet's /stats/summary the tests read.
type summary struct {
	Node struct {
		CPU    *cpuStats    `json:"cpu"`
		Memory *memoryStats `json:"memory"`
	} `json:"node"`
	Pods []struct {
		PodRef struct {
			Name, Namespace, UID string
		} `json:"podRef"`
		Containers []struct {
			Name   string       `json:"name"`
			CPU    *cpuStats    `json:"cpu"`
			Memory *memoryStats `json:"memory"`
		} `json:"containers"`
		CPU    *cpuStats    `json:"cpu"`
		Memory *memoryStats `json:"memory"`
	} `json:"pods"`
}

type cpuStats struct {
	UsageNanoCores       *uint64 `json:"usageNanoCores"`
	UsageCoreNanoSeconds *uint64 `json:"usageCoreNanoSeconds"`
}

type memoryStats struct {
	UsageBytes      *uint64 `json:"usageBytes"`
	WorkingSetBytes *uint64 `json:"workingSetBytes"`
}

func (e *env) summary() (*summary, []byte, error) {
	b, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/stats/summary", e.roPort))
	if err != nil {
		return nil, b, err
	}
	var s summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, b, fmt.Errorf("decode /stats/summary: %w", err)
	}
	return &s, b, nil
}

// writeManifest drops pod into the static pod directory atomically (the
// kubelet ignores dot files).
func (e *env) writeManifest(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	b, err := json.MarshalIndent(pod, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(e.manifests, "."+pod.Name+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(e.manifests, pod.Name+".json")); err != nil {
		t.Fatal(err)
	}
}

func (e *env) removeManifest(t *testing.T, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(e.manifests, name+".json")); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}

// newPod is a static pod in namespace default with a short grace period.
func newPod(name string, containers ...corev1.Container) *corev1.Pod {
	grace := int64(3)
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{
			Containers:                    containers,
			TerminationGracePeriodSeconds: &grace,
			RestartPolicy:                 corev1.RestartPolicyAlways,
		},
	}
}

// ctr runs script with sh -c in the busybox image.
func ctr(name, script string) corev1.Container {
	return corev1.Container{
		Name: name, Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
		Command: []string{"sh", "-c", script},
	}
}

func execProbe(cmd ...string) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: cmd}},
		PeriodSeconds: 1, FailureThreshold: 1, SuccessThreshold: 1, TimeoutSeconds: 2,
	}
}

// waitPod polls /pods every 500ms until check(pod) returns "" (done); it
// fails the test with the last reason and the pod's status on timeout.
func (e *env) waitPod(t *testing.T, name string, timeout time.Duration, check func(*corev1.Pod) string) *corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	var p *corev1.Pod
	for {
		var err error
		p, err = e.pod(name)
		switch {
		case err != nil:
			last = err.Error()
		case p == nil:
			last = "pod not in /pods"
		default:
			if last = check(p); last == "" {
				return p
			}
		}
		if time.Now().After(deadline) {
			st, _ := json.MarshalIndent(statusOf(p), "", " ")
			t.Fatalf("pod %s after %v: %s\nstatus: %s\nkubelet log:\n%s", name, timeout, last, st,
				strings.Join(e.kubeletLogGrep(name+"-"+nodeName), "\n"))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func statusOf(p *corev1.Pod) any {
	if p == nil {
		return nil
	}
	return p.Status
}

// cstatus returns the status of container name (init containers too).
func cstatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for _, l := range [][]corev1.ContainerStatus{p.Status.ContainerStatuses, p.Status.InitContainerStatuses} {
		for i := range l {
			if l[i].Name == name {
				return &l[i]
			}
		}
	}
	return nil
}

// running is a waitPod check: phase Running and the containers running.
func running(containers ...string) func(*corev1.Pod) string {
	return func(p *corev1.Pod) string {
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Sprintf("phase %q", p.Status.Phase)
		}
		for _, c := range containers {
			cs := cstatus(p, c)
			if cs == nil || cs.State.Running == nil {
				return fmt.Sprintf("container %s not running", c)
			}
		}
		return ""
	}
}

// waitLogs polls /containerLogs until it contains every want.
func (e *env) waitLogs(t *testing.T, name, container string, previous bool, timeout time.Duration, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, err := e.logs(name, container, previous)
		missing := ""
		for _, w := range want {
			if !strings.Contains(out, w) {
				missing = w
				break
			}
		}
		if err == nil && missing == "" {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs of %s/%s (previous=%t): want %q, err %v, got:\n%s", name, container, previous, missing, err, out)
		}
		time.Sleep(time.Second)
	}
}

// results collects each scenario's outcome for the closing table.
var results struct {
	sync.Mutex
	rows []string
}

// scenario registers t's outcome in the table printed at the end.
func scenario(t *testing.T) {
	start := time.Now()
	t.Cleanup(func() {
		outcome := "PASS"
		if t.Failed() {
			outcome = "FAIL"
		} else if t.Skipped() {
			outcome = "SKIP"
		}
		results.Lock()
		results.rows = append(results.rows, fmt.Sprintf("%-4s %-28s %6.1fs", outcome, t.Name(), time.Since(start).Seconds()))
		results.Unlock()
	})
}

func printResults(total time.Duration) {
	results.Lock()
	defer results.Unlock()
	sort.Strings(results.rows)
	fmt.Printf("\n=== kubelet e2e: %s\n", kubeletVersion)
	for _, r := range results.rows {
		fmt.Println(r)
	}
	fmt.Printf("=== total %.0fs\n", total.Seconds())
}
