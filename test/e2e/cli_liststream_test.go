package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestCLIListsThroughStreams: the built berth CLI lists pods, containers,
// images and stats through berthd's list streams (berthd's request log
// shows no unary list call) and prints what the unary calls hold.
func TestCLIListsThroughStreams(t *testing.T) {
	e := startCtrEnv(t)
	d := e.d
	running := e.run(t, e.config("sleeper", "sleep", "1000"))
	t.Cleanup(func() { e.stop(t, running, 0) })
	e.mustCreate(t, e.config("created", "true"))
	ctx := ctxT(t, time.Minute)

	short := func(ids []string) []string {
		out := make([]string, 0, len(ids))
		for _, id := range ids {
			out = append(out, strings.TrimPrefix(id, "sha256:")[:12])
		}
		slices.Sort(out)
		return out
	}
	cliShort := func(args ...string) []string { return short(cliIDs(t, cli(t, d, args...))) }

	// berthd logs a request before answering it, but the test reads the
	// log through a pipe: the segment below starts once the unary calls
	// made here are in it, so it holds only what the CLI asked.
	logged := func(m string) int { return strings.Count(d.Log(), "method="+m+" ") }
	unaryBefore := map[string]int{}
	for _, m := range []string{"ListContainers", "ListPodSandbox", "ListImages"} {
		unaryBefore[m] = logged(m)
	}
	ctrs, err := d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var ctrIDs []string
	for _, c := range ctrs.GetContainers() {
		ctrIDs = append(ctrIDs, c.GetId())
	}
	pods, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var podIDs []string
	for _, p := range pods.GetItems() {
		podIDs = append(podIDs, p.GetId())
	}
	imgs, err := d.Images.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var imgIDs []string
	for _, i := range imgs.GetImages() {
		imgIDs = append(imgIDs, i.GetId())
	}
	for m, n := range unaryBefore {
		deadline := time.Now().Add(10 * time.Second)
		for logged(m) <= n && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	// From here on every list request comes from the CLI.
	logStart := len(d.Log())
	if got, want := cliShort("ps", "-a", "-q"), short(ctrIDs); len(want) != 2 || !slices.Equal(got, want) {
		t.Errorf("berth ps -a -q: %v, unary list %v", got, want)
	}
	if got, want := cliShort("pods", "-q"), short(podIDs); len(want) != 1 || !slices.Equal(got, want) {
		t.Errorf("berth pods -q: %v, unary list %v", got, want)
	}
	if got, want := cliShort("images", "-q"), short(imgIDs); len(want) != 2 || !slices.Equal(got, want) {
		t.Errorf("berth images -q: %v, unary list %v", got, want)
	}
	var cs runtimeapi.ListContainerStatsResponse
	cliDecode(t, cli(t, d, "stats", "-a", "-o", "json"), &cs)
	if len(cs.GetStats()) != 2 {
		t.Errorf("berth stats -a: %d containers, want 2", len(cs.GetStats()))
	}
	out := cli(t, d, "statsp", "-o", "json")
	var ps struct {
		Stats []json.RawMessage `json:"stats"`
	}
	if err := json.Unmarshal([]byte(out), &ps); err != nil || len(ps.Stats) != 1 {
		t.Errorf("berth statsp -o json: %d pods (%v):\n%s", len(ps.Stats), err, out)
	}

	// Every CLI request is logged before berth exits; the last one ends
	// the log segment of interest.
	waitLog(t, d, "method=StreamPodSandboxStats duration=")
	seg := d.Log()[logStart:]
	for _, stream := range []string{"StreamContainers", "StreamPodSandboxes", "StreamImages", "StreamContainerStats", "StreamPodSandboxStats"} {
		if !strings.Contains(seg, "method="+stream+" ") {
			t.Errorf("berthd log shows no %s call from the CLI", stream)
		}
	}
	for _, unary := range []string{"ListContainers", "ListPodSandbox", "ListImages", "ListContainerStats", "ListPodSandboxStats"} {
		if strings.Contains(seg, "method="+unary+" ") {
			t.Errorf("the CLI called %s instead of its stream:\n%s", unary, seg)
		}
	}
}
