package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"sigs.k8s.io/yaml"
)

var testNow = time.Date(2025, 1, 2, 15, 4, 5, 0, time.UTC)

func testPods() []*runtimeapi.PodSandbox {
	return []*runtimeapi.PodSandbox{
		{
			Id:        "0123456789abcdef0123456789abcdef",
			Metadata:  &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Attempt: 1},
			State:     runtimeapi.PodSandboxState_SANDBOX_READY,
			CreatedAt: testNow.Add(-3 * time.Second).UnixNano(),
		},
		{
			Id:             "fedcba",
			Metadata:       &runtimeapi.PodSandboxMetadata{Name: "a-much-longer-pod-name", Namespace: "kube-system"},
			State:          runtimeapi.PodSandboxState_SANDBOX_NOTREADY,
			CreatedAt:      testNow.Add(-2 * time.Hour).UnixNano(),
			RuntimeHandler: "runc",
		},
	}
}

// columns splits a table into rows of cells, checking that every cell
// starts at the same offset as its header.
func columns(t *testing.T, table string) [][]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
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
			if s >= len(l) {
				t.Fatalf("row %q ends before column %d", l, j)
			}
			if s > 0 && l[s-1] != ' ' {
				t.Fatalf("column %d of %q is not aligned with its header %q", j, l, header)
			}
			end := len(l)
			if j+1 < len(starts) {
				end = starts[j+1]
			}
			cells = append(cells, strings.TrimSpace(l[s:end]))
		}
		rows = append(rows, cells)
	}
	return rows
}

func TestPodTable(t *testing.T) {
	var buf bytes.Buffer
	if err := printPodTable(&buf, testPods(), false, testNow); err != nil {
		t.Fatal(err)
	}
	rows := columns(t, buf.String())
	want := [][]string{
		{"POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"},
		{"0123456789abc", "3 seconds ago", "Ready", "web", "default", "1", "(default)"},
		{"fedcba", "2 hours ago", "NotReady", "a-much-longer-pod-name", "kube-system", "0", "runc"},
	}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Errorf("table:\n%s\ngot  %q\nwant %q", buf.String(), rows, want)
	}
}

func TestContainerTable(t *testing.T) {
	ctrs := []*runtimeapi.Container{{
		Id:           "c0ffee0123456789c0ffee",
		PodSandboxId: "0123456789abcdef",
		Metadata:     &runtimeapi.ContainerMetadata{Name: "app", Attempt: 2},
		Image:        &runtimeapi.ImageSpec{Image: "sha256:" + strings.Repeat("ab", 32)},
		State:        runtimeapi.ContainerState_CONTAINER_EXITED,
		CreatedAt:    testNow.Add(-time.Minute).UnixNano(),
	}, {
		Id:           "beef",
		PodSandboxId: "unknownpod",
		Metadata:     &runtimeapi.ContainerMetadata{Name: "side"},
		Image:        &runtimeapi.ImageSpec{Image: "docker.io/library/busybox:latest"},
		State:        runtimeapi.ContainerState_CONTAINER_RUNNING,
		Labels:       map[string]string{"io.kubernetes.pod.name": "from-label", "io.kubernetes.pod.namespace": "ns-label"},
		CreatedAt:    testNow.Add(-time.Second).UnixNano(),
	}}
	var buf bytes.Buffer
	if err := printContainerTable(&buf, ctrs, map[string]*runtimeapi.PodSandboxMetadata{"0123456789abcdef": {Name: "web", Namespace: "default"}}, false, testNow); err != nil {
		t.Fatal(err)
	}
	rows := columns(t, buf.String())
	want := [][]string{
		{"CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID", "POD", "NAMESPACE"},
		{"c0ffee0123456", "abababababab" + "a", "About a minute ago", "Exited", "app", "2", "0123456789abc", "web", "default"},
		{"beef", "docker.io/library/busybox:latest", "1 second ago", "Running", "side", "0", "unknownpod", "from-label", "ns-label"},
	}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Errorf("table:\n%s\ngot  %q\nwant %q", buf.String(), rows, want)
	}
}

func TestImageRowsAndTable(t *testing.T) {
	img := &runtimeapi.Image{
		Id:          "sha256:" + strings.Repeat("12", 32),
		RepoTags:    []string{"localhost:5000/app:1.0", "localhost:5000/app:latest"},
		RepoDigests: []string{"localhost:5000/app@sha256:" + strings.Repeat("cd", 32), "other/app@sha256:" + strings.Repeat("ef", 32)},
		Size:        1234567,
	}
	var buf bytes.Buffer
	if err := printImageTable(&buf, []*runtimeapi.Image{img, {Id: "sha256:99", Size: 10}}, "", &imageListOptions{digests: true}); err != nil {
		t.Fatal(err)
	}
	rows := columns(t, buf.String())
	want := [][]string{
		{"IMAGE", "TAG", "DIGEST", "IMAGE ID", "SIZE"},
		{"localhost:5000/app", "1.0", "cdcdcdcdcdcdc", "1212121212121", "1.23MB"},
		{"localhost:5000/app", "latest", "cdcdcdcdcdcdc", "1212121212121", "1.23MB"},
		{"other/app", "<none>", "efefefefefefe", "1212121212121", "1.23MB"},
		{"<none>", "<none>", "", "99", "10B"},
	}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Errorf("table:\n%s\ngot  %q\nwant %q", buf.String(), rows, want)
	}
}

func TestPrintProtoDecodes(t *testing.T) {
	resp := &runtimeapi.ListPodSandboxResponse{Items: testPods()}
	for _, format := range []string{formatJSON, formatYAML} {
		var buf bytes.Buffer
		if err := printProto(&buf, outputFormat{format: format}, resp); err != nil {
			t.Fatal(err)
		}
		js := buf.Bytes()
		if format == formatYAML {
			var err error
			if js, err = yaml.YAMLToJSON(js); err != nil {
				t.Fatalf("output is not YAML: %v\n%s", err, buf.String())
			}
		}
		got := &runtimeapi.ListPodSandboxResponse{}
		if err := protojson.Unmarshal(js, got); err != nil {
			t.Fatalf("%s output does not decode: %v\n%s", format, err, buf.String())
		}
		if !proto.Equal(got, resp) {
			t.Errorf("%s round trip: got %v", format, got)
		}
	}
	var buf bytes.Buffer
	_ = printProto(&buf, outputFormat{format: formatJSON}, resp)
	if !strings.Contains(buf.String(), `"createdAt"`) || !strings.Contains(buf.String(), "\n  \"items\"") {
		t.Errorf("JSON is not crictl-like (camelCase, indented):\n%s", buf.String())
	}
}

func TestPlainError(t *testing.T) {
	st := status.Error(codes.NotFound, `container "x" not found`)
	err := fmt.Errorf("stop container x: %w", st)
	if got := plainError(err); got != `stop container x: container "x" not found` {
		t.Errorf("plainError = %q", got)
	}
	joined := errors.Join(err, fmt.Errorf("remove y: %w", status.Error(codes.Internal, "boom")))
	if got := plainError(joined); got != "stop container x: container \"x\" not found\nremove y: boom" {
		t.Errorf("plainError(joined) = %q", got)
	}
	if got := plainError(errors.New("plain")); got != "plain" {
		t.Errorf("plainError = %q", got)
	}
}

func TestSmallHelpers(t *testing.T) {
	if got := shortID("sha256:0123456789abcdef", false); got != "0123456789abc" {
		t.Errorf("shortID = %q", got)
	}
	if got := shortID("sha256:0123456789abcdef", true); got != "0123456789abcdef" {
		t.Errorf("shortID no-trunc = %q", got)
	}
	if got := humanSize(1500); got != "1.5kB" {
		t.Errorf("humanSize = %q", got)
	}
	if repo, tag := splitTag("localhost:5000/a/b"); repo != "localhost:5000/a/b" || tag != "<none>" {
		t.Errorf("splitTag = %q %q", repo, tag)
	}
	if _, err := parseLabels([]string{"novalue"}); err == nil {
		t.Error("label without = accepted")
	}
	if got := limitLatest([]int{1, 2, 3}, true, 0); len(got) != 1 {
		t.Errorf("latest = %v", got)
	}
	if got := progressLine(1, "Pulling x", 1500*time.Millisecond, 2_000_000); got != "/ Pulling x  2MB written  1.5s" {
		t.Errorf("progressLine = %q", got)
	}
	if got := progressLine(0, "Pulling x", time.Second, -1); got != "| Pulling x  1.0s" {
		t.Errorf("progressLine = %q", got)
	}
	if got := cpuPercent(&runtimeapi.CpuUsage{UsageNanoCores: &runtimeapi.UInt64Value{Value: 250_000_000}}, nil); got != 25 {
		t.Errorf("cpuPercent = %v", got)
	}
	prev := &runtimeapi.CpuUsage{Timestamp: 0, UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: 0}}
	cur := &runtimeapi.CpuUsage{Timestamp: 1e9, UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: 5e8}}
	if got := cpuPercent(cur, prev); got != 50 {
		t.Errorf("cpuPercent from samples = %v", got)
	}
}

func TestPullAuth(t *testing.T) {
	a, err := pullAuth("user:pa:ss", "")
	if err != nil || a.Username != "user" || a.Password != "pa:ss" {
		t.Errorf("creds: %v %v", a, err)
	}
	if _, err := pullAuth("", "not base64!"); err == nil {
		t.Error("bad --auth accepted")
	}
	if _, err := pullAuth("a:b", "YTpi"); err == nil {
		t.Error("both accepted")
	}
	if a, err := pullAuth("", "YTpi"); err != nil || a.Auth != "YTpi" {
		t.Errorf("auth: %v %v", a, err)
	}
}

func TestStartProgress(t *testing.T) {
	var buf safeBuffer
	var calls int
	probe := func(context.Context) (uint64, bool) {
		calls++
		return uint64(calls) * 1_000_000, true
	}
	stop := startProgress(&buf, "Pulling busybox", probe)
	time.Sleep(1300 * time.Millisecond)
	stop()
	out := buf.String()
	if !strings.Contains(out, "Pulling busybox") || !strings.Contains(out, "MB written") || !strings.HasSuffix(out, "\r\033[K") {
		t.Errorf("progress output %q", out)
	}
}
