package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// A pre-installed plugin hears every event of a pod and its container,
// in order and with their data, and its adjustments (env, mount, rlimit,
// OOM score, annotation) are what the container runs with.
func TestNRIEventsInOrderAndAdjustments(t *testing.T) {
	hostDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(hostDir, "file"), []byte("from-nri-plugin\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := startNRIEnv(t, "", []string{"-env", "NRI_INJECTED=hello", "-mount", hostDir + ":/nri-mount",
		"-rlimit", "RLIMIT_NOFILE:1111:2222", "-oom-score-adj", "321", "-annotation", "nri.test/added=yes"})
	log := filepath.Join(e.dir, "pre.log")
	if info := berthInfoNRI(t, e.d); !info.Enabled || !info.has("10-logger") {
		t.Fatalf("berth info does not list the pre-installed plugin: %+v", info)
	}

	cfg := e.config("nri-c1", "sleep", "3600")
	cfg.Labels = map[string]string{"tier": "test"}
	cfg.Envs = []*runtimeapi.KeyValue{{Key: "FROM_CRI", Value: []byte("1")}}
	id := e.run(t, cfg)

	// What the container's own process got.
	out := e.exec(t, id, 10, "sh", "-c",
		"tr '\\0' '\\n' </proc/1/environ | grep NRI_INJECTED; cat /nri-mount/file; grep 'open files' /proc/1/limits; cat /proc/1/oom_score_adj; touch /nri-mount/x 2>&1 || echo read-only")
	got := string(out.GetStdout())
	for _, want := range []string{"NRI_INJECTED=hello", "from-nri-plugin", "1111", "2222", "321", "read-only"} {
		if !strings.Contains(got, want) {
			t.Errorf("container output lacks %q:\n%s%s", want, got, out.GetStderr())
		}
	}
	st, err := e.d.Runtime.ContainerStatus(ctxT(t, 10*time.Second), &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var verbose struct {
		RuntimeSpec struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &verbose); err != nil {
		t.Fatal(err)
	}
	if verbose.RuntimeSpec.Annotations["nri.test/added"] != "yes" {
		t.Errorf("spec annotations lack the plugin's: %v", verbose.RuntimeSpec.Annotations)
	}

	if _, err := e.d.Runtime.UpdateContainerResources(ctxT(t, 30*time.Second), &runtimeapi.UpdateContainerResourcesRequest{
		ContainerId: id, Linux: &runtimeapi.LinuxContainerResources{CpuShares: 512},
	}); err != nil {
		t.Fatal(err)
	}
	e.stop(t, id, 0)
	e.remove(t, id)
	if _, err := e.d.Runtime.UpdatePodSandboxResources(ctxT(t, 30*time.Second), &runtimeapi.UpdatePodSandboxResourcesRequest{
		PodSandboxId: e.pod, Resources: &runtimeapi.LinuxContainerResources{CpuShares: 1024},
	}); err != nil {
		t.Fatal(err)
	}
	stopPod(t, e.d, e.pod)
	stopPod(t, e.d, e.pod) // idempotent, and told once
	removePod(t, e.d, e.pod)

	evs := eventsOf(t, log, e.pod)
	want := []string{"RunPodSandbox", "CreateContainer", "PostCreateContainer", "StartContainer", "PostStartContainer",
		"UpdateContainer", "PostUpdateContainer", "StopContainer", "RemoveContainer",
		"UpdatePodSandbox", "PostUpdatePodSandbox", "StopPodSandbox", "RemovePodSandbox"}
	if got := eventNames(evs); !slices.Equal(got, want) {
		t.Fatalf("events:\n got %v\nwant %v", got, want)
	}

	run := evs[0]
	if run.PodName != "ctr" || run.PodNS != "e2e" || run.PodUID != "uid-ctr" || run.PodLabels["app"] != "ctr" ||
		!slices.ContainsFunc(run.Namespaces, func(ns string) bool { return strings.HasPrefix(ns, "network=/") }) {
		t.Errorf("RunPodSandbox data: %+v", run)
	}
	create := findEvent(t, evs, "CreateContainer", id)
	if create.CtrName != "nri-c1" || create.Labels["tier"] != "test" || !slices.Equal(create.Args, []string{"sleep", "3600"}) ||
		!slices.Contains(create.Env, "FROM_CRI=1") || slices.Contains(create.Env, "NRI_INJECTED=hello") ||
		!slices.Contains(create.Mounts, "/etc/hosts") || create.CgroupsPath == "" || !slices.Contains(create.Namespaces, "pid") {
		t.Errorf("CreateContainer data: %+v", create)
	}
	post := findEvent(t, evs, "PostCreateContainer", id)
	if post.CtrState != "CONTAINER_CREATED" || !slices.Contains(post.Env, "NRI_INJECTED=hello") || !slices.Contains(post.Mounts, "/nri-mount") {
		t.Errorf("PostCreateContainer data (adjusted spec): %+v", post)
	}
	if started := findEvent(t, evs, "PostStartContainer", id); started.CtrState != "CONTAINER_RUNNING" || started.Pid == 0 {
		t.Errorf("PostStartContainer data: %+v", started)
	}
	if stopped := findEvent(t, evs, "StopContainer", id); stopped.CtrState != "CONTAINER_STOPPED" {
		t.Errorf("StopContainer data: %+v", stopped)
	}
}

// A plugin that refuses RunPodSandbox and CreateContainer fails those
// requests, nothing of the pod or container is left, and the kubelet's
// retry succeeds. The plugin, connecting to a berthd with a pod, was
// synchronized with it.
func TestNRIPluginFailureLeavesNothing(t *testing.T) {
	e := startNRIEnv(t, "", nil)
	_, log := e.connect(t, "50", "refuser", "-fail", "RunPodSandbox", "-fail", "CreateContainer")
	sync := testutil.ReadNRIEvents(t, log)[0]
	if sync.Event != "Synchronize" || !slices.Contains(sync.SyncPods, e.pod) {
		t.Fatalf("first event %+v, want a Synchronize with pod %s", sync, e.pod)
	}
	if info := berthInfoNRI(t, e.d); !info.has("50-refuser") {
		t.Errorf("berth info does not list the external plugin: %+v", info)
	}

	state := filepath.Join(e.d.Dir, "state")
	podsBefore, ctrsBefore, layersBefore := dirEntries(t, filepath.Join(state, "pods")), dirEntries(t, filepath.Join(state, "containers")), len(storageContainers(t, e.d))

	cfg := podConfig("nri-refused")
	_, err := e.d.Runtime.RunPodSandbox(ctxT(t, 30*time.Second), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err == nil || !strings.Contains(err.Error(), "refuses RunPodSandbox") {
		t.Fatalf("RunPodSandbox with a refusing plugin: %v", err)
	}
	if slices.Contains(podNames(t, e.d), "nri-refused") || dirEntries(t, filepath.Join(state, "pods")) != podsBefore {
		t.Fatalf("a refused pod was left behind: %v", podNames(t, e.d))
	}
	podID := runPod(t, e.d, cfg) // the kubelet's retry

	_, err = e.create(t, e.config("refused", "sleep", "3600"))
	if err == nil || !strings.Contains(err.Error(), "refuses CreateContainer") {
		t.Fatalf("CreateContainer with a refusing plugin: %v", err)
	}
	resp, lerr := e.d.Runtime.ListContainers(ctxT(t, 10*time.Second), &runtimeapi.ListContainersRequest{})
	if lerr != nil {
		t.Fatal(lerr)
	}
	if len(resp.GetContainers()) != 0 || dirEntries(t, filepath.Join(state, "containers")) != ctrsBefore || len(storageContainers(t, e.d)) != layersBefore {
		t.Fatalf("a refused container was left behind: %d listed, %d records (had %d), %d storage containers (had %d)",
			len(resp.GetContainers()), dirEntries(t, filepath.Join(state, "containers")), ctrsBefore, len(storageContainers(t, e.d)), layersBefore)
	}
	id := e.run(t, e.config("refused", "sleep", "3600")) // retry
	if out := e.exec(t, id, 10, "echo", "ok"); strings.TrimSpace(string(out.GetStdout())) != "ok" {
		t.Fatalf("exec after the retry: %q", out.GetStdout())
	}

	// The refused pod was reported gone to the plugin; the retry is a new pod.
	var refused string
	for _, ev := range testutil.ReadNRIEvents(t, log) {
		if ev.PodName == "nri-refused" && ev.PodID != podID {
			refused = ev.PodID
		}
	}
	if got := eventNames(eventsOf(t, log, refused)); !slices.Equal(got, []string{"RunPodSandbox", "StopPodSandbox", "RemovePodSandbox"}) {
		t.Errorf("events of the refused pod: %v", got)
	}
	if got := eventNames(eventsOf(t, log, podID)); !slices.Equal(got, []string{"RunPodSandbox"}) {
		t.Errorf("events of the retried pod: %v", got)
	}
}

// A plugin that never answers is timed out and disconnected; berthd
// answers other requests meanwhile and the creation goes on without it.
func TestNRIHangingPluginTimedOut(t *testing.T) {
	e := startNRIEnv(t, "nri_plugin_request_timeout = \"5s\"\n", nil)
	cmd, log := e.connect(t, "60", "hanger", "-hang", "CreateContainer")
	type result struct {
		id   string
		err  error
		took time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		id, err := e.create(t, e.config("hung", "sleep", "3600"))
		done <- result{id, err, time.Since(start)}
	}()
	eventually(t, "the plugin got CreateContainer", func() bool {
		return slices.ContainsFunc(testutil.ReadNRIEvents(t, log), func(ev testutil.NRIEvent) bool { return ev.Event == "CreateContainer" })
	})
	start := time.Now()
	if _, err := e.d.Runtime.Version(ctxT(t, 10*time.Second), &runtimeapi.VersionRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.Runtime.ListContainers(ctxT(t, 10*time.Second), &runtimeapi.ListContainersRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.Runtime.PodSandboxStatus(ctxT(t, 10*time.Second), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: e.pod}); err != nil {
		t.Fatal(err)
	}
	answered := time.Since(start)
	select {
	case r := <-done:
		t.Fatalf("CreateContainer returned (%v) before the hanging plugin was timed out", r.err)
	default:
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("CreateContainer after the plugin timed out: %v", r.err)
	}
	t.Logf("CreateContainer took %v with a plugin hanging (request timeout 5s); Version, ListContainers and PodSandboxStatus answered in %v meanwhile", r.took, answered)
	e.start(t, r.id)
	// The plugin was disconnected: it exits, and later events skip it.
	eventually(t, "the timed-out plugin exits", func() bool { return processGone(cmd.Process.Pid) })
	id2 := e.run(t, e.config("after", "sleep", "3600"))
	if slices.ContainsFunc(testutil.ReadNRIEvents(t, log), func(ev testutil.NRIEvent) bool { return ev.CtrID == id2 }) {
		t.Errorf("a disconnected plugin got events")
	}
	if info := berthInfoNRI(t, e.d); info.has("60-hanger") || info.Count != 0 {
		t.Errorf("berth info still lists the disconnected plugin: %+v", info)
	}
}

// A plugin connecting to a berthd with a running container is
// synchronized with it and hears of later ones; one that goes away
// changes nothing; after a restart the pre-installed plugin runs again,
// synchronized with what runs.
func TestNRISyncAndRestart(t *testing.T) {
	e := startNRIEnv(t, "", []string{})
	pre := filepath.Join(e.dir, "pre.log")
	id := e.run(t, e.config("running", "sleep", "3600"))

	cmd, ext := e.connect(t, "70", "late")
	sync := testutil.ReadNRIEvents(t, ext)[0]
	if !slices.Contains(sync.SyncPods, e.pod) || !slices.Contains(sync.SyncCtrs, id) {
		t.Fatalf("synchronization %+v lacks pod %s or container %s", sync, e.pod, id)
	}
	id2 := e.mustCreate(t, e.config("later", "sleep", "3600"))
	findEvent(t, eventsOf(t, ext, e.pod), "CreateContainer", id2)

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the plugin exits", func() bool { return processGone(cmd.Process.Pid) })
	e.start(t, id2)
	if out := e.exec(t, id2, 10, "echo", "ok"); strings.TrimSpace(string(out.GetStdout())) != "ok" {
		t.Fatalf("exec after the plugin went away: %q", out.GetStdout())
	}

	syncs := func() []testutil.NRIEvent {
		var out []testutil.NRIEvent
		for _, ev := range testutil.ReadNRIEvents(t, pre) {
			if ev.Event == "Synchronize" {
				out = append(out, ev)
			}
		}
		return out
	}
	if n := len(syncs()); n != 1 {
		t.Fatalf("pre-installed plugin synchronized %d times before the restart", n)
	}
	e.d.Restart(t)
	eventually(t, "the pre-installed plugin is synchronized again", func() bool { return len(syncs()) == 2 })
	again := syncs()[1]
	if !slices.Contains(again.SyncPods, e.pod) || !slices.Contains(again.SyncCtrs, id) || !slices.Contains(again.SyncCtrs, id2) {
		t.Fatalf("synchronization after the restart %+v lacks the pod or its containers", again)
	}
	if info := berthInfoNRI(t, e.d); !info.has("10-logger") {
		t.Errorf("berth info after the restart: %+v", info)
	}
	id3 := e.run(t, e.config("after-restart", "sleep", "3600"))
	findEvent(t, eventsOf(t, pre, e.pod), "PostStartContainer", id3)
}

// processGone reports whether pid no longer runs (or is a zombie).
func processGone(pid int) bool {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	fields := strings.Fields(string(data))
	return len(fields) > 2 && fields[2] == "Z"
}

// Two plugins setting the same env var conflict: NRI's rules refuse the
// adjustment and the creation fails, leaving nothing behind.
func TestNRIConflictingAdjustments(t *testing.T) {
	e := startNRIEnv(t, "", nil)
	e.connect(t, "20", "first", "-env", "NRI_SAME=first")
	e.connect(t, "30", "second", "-env", "NRI_SAME=second")
	_, err := e.create(t, e.config("conflict", "sleep", "3600"))
	if err == nil || !strings.Contains(err.Error(), "NRI_SAME") {
		t.Fatalf("CreateContainer with conflicting adjustments: %v", err)
	}
	resp, lerr := e.d.Runtime.ListContainers(ctxT(t, 10*time.Second), &runtimeapi.ListContainersRequest{})
	if lerr != nil {
		t.Fatal(lerr)
	}
	if n := len(resp.GetContainers()); n != 0 || len(storageContainers(t, e.d)) != 0 {
		t.Fatalf("a refused container was left behind: %d listed, %d in storage", n, len(storageContainers(t, e.d)))
	}
}

// Updates a plugin asks for other containers go through berth's own
// update path: the running container's CPU shares change, and nothing
// else of its resources does.
func TestNRIPluginUpdatesOtherContainers(t *testing.T) {
	e := startNRIEnv(t, "", nil)
	cfg := e.config("running", "sleep", "3600")
	cfg.Linux = &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{CpuShares: 1024, MemoryLimitInBytes: 256 << 20}}
	id := e.run(t, cfg)
	e.connect(t, "40", "updater", "-update-shares", "300")
	e.run(t, e.config("newcomer", "sleep", "3600"))
	res := e.status(t, id).GetResources().GetLinux()
	if res.GetCpuShares() != 300 || res.GetMemoryLimitInBytes() != 256<<20 {
		t.Fatalf("resources of the running container after the plugin's update: %v", res)
	}
}

// A CDI device a plugin's adjustment names is resolved from berth's CDI
// spec dirs like a request's; an unknown one fails the creation.
func TestNRICDIDeviceFromPlugin(t *testing.T) {
	e := startNRIEnv(t, "", nil)
	node := mknodTestDevice(t)
	writeTestFile(t, filepath.Join(e.d.Dir, "cdi", "nri.json"), fmt.Sprintf(`{"cdiVersion": "0.6.0", "kind": "berth.test/nri",
 "devices": [{"name": "null", "containerEdits": {"deviceNodes": [{"path": "/dev/berth-nri", "hostPath": %q}], "env": ["BERTH_NRI_CDI=null"]}}]}`, node))
	waitExtInfo(t, e.ctrEnv, "the CDI device", func(i extInfo) bool { return slices.Contains(i.CDI.Devices, "berth.test/nri=null") })
	cmd, _ := e.connect(t, "80", "cdi", "-cdi", "berth.test/nri=null")
	id := e.run(t, e.config("with-device", "sleep", "3600"))
	out := e.exec(t, id, 10, "sh", "-c", `test -c /dev/berth-nri && echo dev-ok; echo "env=$BERTH_NRI_CDI"`)
	if got := string(out.GetStdout()); got != "dev-ok\nenv=null\n" {
		t.Fatalf("container with the plugin's CDI device: %q %q", got, out.GetStderr())
	}
	_ = cmd.Process.Kill()
	eventually(t, "the plugin exits", func() bool { return processGone(cmd.Process.Pid) })
	e.connect(t, "81", "unknown-cdi", "-cdi", "berth.test/nri=missing")
	if _, err := e.create(t, e.config("missing-device", "sleep", "3600")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("CreateContainer with an unknown CDI device from a plugin: %v", err)
	}
}
