package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func statusJSON(t *testing.T, docs ...statusDoc) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	if err := printStatusDocs(&buf, outputFormat{format: formatJSON}, docs); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	return doc
}

// A container that exited 0 and one only created: crictl shows exitCode 0,
// the state by name, every field (unset messages as null) and times in
// RFC 3339, with startedAt/finishedAt the zero time where they do not apply.
func TestContainerStatusObjectCrictlShape(t *testing.T) {
	created := testNow.Add(-time.Minute)
	exited := &runtimeapi.ContainerStatus{
		Id: "c1", State: runtimeapi.ContainerState_CONTAINER_EXITED, ExitCode: 0, Reason: "Completed",
		CreatedAt: created.UnixNano(), StartedAt: created.Add(time.Second).UnixNano(), FinishedAt: created.Add(2 * time.Second).UnixNano(),
	}
	obj, err := containerStatusObject(exited)
	if err != nil {
		t.Fatal(err)
	}
	doc := statusJSON(t, newStatusDoc(obj, map[string]string{"info": `{"pid": 42, "big": 9007199254740993}`, "note": `"quoted"`}))
	st := doc["status"].(map[string]any)
	if code, ok := st["exitCode"]; !ok || code != 0.0 {
		t.Errorf("exitCode = %v (present %v), want 0", code, ok)
	}
	if st["state"] != "CONTAINER_EXITED" {
		t.Errorf("state = %v", st["state"])
	}
	for _, k := range []string{"resources", "image", "metadata", "user"} {
		if v, ok := st[k]; !ok || v != nil {
			t.Errorf("%s = %v (present %v), want null", k, v, ok)
		}
	}
	for _, k := range []string{"labels", "annotations", "mounts"} {
		if _, ok := st[k]; !ok {
			t.Errorf("%s missing", k)
		}
	}
	if want := created.Local().Format(time.RFC3339Nano); st["createdAt"] != want {
		t.Errorf("createdAt = %v, want %s", st["createdAt"], want)
	}
	if want := created.Add(2 * time.Second).Local().Format(time.RFC3339Nano); st["finishedAt"] != want {
		t.Errorf("finishedAt = %v, want %s", st["finishedAt"], want)
	}
	if info := doc["info"].(map[string]any); info["pid"] != 42.0 {
		t.Errorf("info = %v", info)
	}
	if doc["note"] != "quoted" {
		t.Errorf("a string info value is printed without its quotes, got %v", doc["note"])
	}

	obj, err = containerStatusObject(&runtimeapi.ContainerStatus{Id: "c2", CreatedAt: created.UnixNano()})
	if err != nil {
		t.Fatal(err)
	}
	st = statusJSON(t, newStatusDoc(obj, nil))["status"].(map[string]any)
	zero := time.Time{}.Format(time.RFC3339Nano)
	if st["state"] != "CONTAINER_CREATED" || st["startedAt"] != zero || st["finishedAt"] != zero {
		t.Errorf("created container: state %v startedAt %v finishedAt %v", st["state"], st["startedAt"], st["finishedAt"])
	}
}

func TestPodStatusObjectCrictlShape(t *testing.T) {
	obj, err := podStatusObject(&runtimeapi.PodSandboxStatus{Id: "p1", CreatedAt: testNow.UnixNano()})
	if err != nil {
		t.Fatal(err)
	}
	st := statusJSON(t, newStatusDoc(obj, nil))["status"].(map[string]any)
	if st["state"] != "SANDBOX_READY" || st["createdAt"] != testNow.Local().Format(time.RFC3339Nano) || st["network"] != nil {
		t.Errorf("pod status: %v", st)
	}
	if _, ok := st["network"]; !ok {
		t.Error("unset network left out, crictl shows null")
	}
}

// Several objects print as one JSON array, as crictl does.
func TestStatusDocsArray(t *testing.T) {
	var buf bytes.Buffer
	docs := []statusDoc{newStatusDoc(map[string]any{"id": "a"}, nil), newStatusDoc(map[string]any{"id": "b"}, nil)}
	if err := printStatusDocs(&buf, outputFormat{format: formatJSON}, docs); err != nil {
		t.Fatal(err)
	}
	var arr []map[string]map[string]string
	if err := json.Unmarshal(buf.Bytes(), &arr); err != nil || len(arr) != 2 || arr[1]["status"]["id"] != "b" {
		t.Errorf("got %v (%v) from\n%s", arr, err, buf.String())
	}
	if !strings.HasPrefix(buf.String(), "[\n  {\n    \"status\"") {
		t.Errorf("not indented as crictl:\n%s", buf.String())
	}
}

func TestGoTemplate(t *testing.T) {
	obj, err := containerStatusObject(&runtimeapi.ContainerStatus{Id: "c1", State: runtimeapi.ContainerState_CONTAINER_EXITED,
		ExitCode: 0, CreatedAt: 1, Metadata: &runtimeapi.ContainerMetadata{Name: "web"}})
	if err != nil {
		t.Fatal(err)
	}
	out := outputFormat{format: formatGoTemplate, template: `{{.status.exitCode}} {{.status.state | lower}} {{title .status.metadata.name}} {{json .status.metadata}}`}
	var buf bytes.Buffer
	if err := printStatusDocs(&buf, out, []statusDoc{newStatusDoc(obj, nil)}); err != nil {
		t.Fatal(err)
	}
	if got, want := buf.String(), "0 container_exited Web {\"attempt\":0,\"name\":\"web\"}\n\n"; got != want {
		t.Errorf("template printed %q, want %q", got, want)
	}
	out.template = "{{.status.nosuchkey}}"
	if err := printStatusDocs(&buf, out, []statusDoc{newStatusDoc(obj, nil)}); err == nil {
		t.Error("a missing key is not an error")
	}
	if _, err := parseTemplate("{{.a"); err == nil || !strings.Contains(err.Error(), "--template") {
		t.Errorf("bad template: %v", err)
	}
	// List output goes through the same template, over the -o json document.
	buf.Reset()
	resp := &runtimeapi.ListPodSandboxResponse{Items: testPods()}
	if err := printProto(&buf, outputFormat{format: formatGoTemplate, template: `{{range .items}}{{.metadata.name}} {{.state}}{{"\n"}}{{end}}`}, resp); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); got != "web SANDBOX_READY\na-much-longer-pod-name SANDBOX_NOTREADY\n\n" {
		t.Errorf("list template printed %q", got)
	}
}

func TestImageListFilters(t *testing.T) {
	tagged := &runtimeapi.Image{Id: "sha256:aa", RepoTags: []string{"docker.io/library/busybox:1.36", "docker.io/library/busybox:latest"},
		RepoDigests: []string{"docker.io/library/busybox@sha256:index", "docker.io/library/busybox@sha256:platform"}}
	other := &runtimeapi.Image{Id: "sha256:bb", RepoTags: []string{"registry.k8s.io/pause:3.10"}}
	dangling := &runtimeapi.Image{Id: "sha256:cc", RepoDigests: []string{"quay.io/x/y@sha256:dd"}}
	all := []*runtimeapi.Image{tagged, other, dangling}
	keep := func(filters ...string) (ids []string) {
		match, err := imageFilters(filters)
		if err != nil {
			t.Fatal(err)
		}
		for _, img := range all {
			if match(img) {
				ids = append(ids, img.Id)
			}
		}
		return ids
	}
	if got := keep("dangling=true"); strings.Join(got, ",") != "sha256:cc" {
		t.Errorf("dangling=true: %v", got)
	}
	if got := keep("dangling=false", "reference=busybox:1"); strings.Join(got, ",") != "sha256:aa" {
		t.Errorf("dangling=false,reference: %v", got)
	}
	if _, err := imageFilters([]string{"before=x"}); err == nil {
		t.Error("unknown filter accepted")
	}
	if got := withRepo(all, "busybox"); len(got) != 1 || got[0] != tagged {
		t.Errorf("withRepo busybox: %v", got)
	}
	if isBareRepo("busybox:1.36") || isBareRepo("busybox@sha256:"+strings.Repeat("a", 64)) || !isBareRepo("localhost:5000/busybox") {
		t.Error("isBareRepo")
	}
	// The digest column shows the repository's first repo digest.
	if rows := imageRows(tagged); rows[0].digest != "sha256:index" || rows[1].digest != "sha256:index" {
		t.Errorf("rows: %+v", rows)
	}
	var buf bytes.Buffer
	if err := printImagesVerbose(&buf, []*runtimeapi.Image{tagged}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), "ID: sha256:aa\nRepoTags: docker.io/library/busybox:1.36\n") {
		t.Errorf("images -v:\n%s", buf.String())
	}
}
