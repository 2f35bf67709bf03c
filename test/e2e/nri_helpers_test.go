package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// nriEnv is a ctrEnv whose berthd hosts NRI plugins: the test plugin
// (internal/testutil/nriplugin) pre-installed with preArgs when given,
// external ones started with connect.
type nriEnv struct {
	*ctrEnv
	plugin string // the built test plugin
	dir    string // event logs, host files
}

// startNRIEnv starts a ctrEnv with the test plugin pre-installed as
// 10-logger (when preArgs is not nil) logging to dir/pre.log.
func startNRIEnv(t *testing.T, dropIn string, preArgs []string) *nriEnv {
	t.Helper()
	return startNRIEnvWith(t, dropIn, preArgs, nil)
}

// startNRIEnvWith is startNRIEnv with more executable files in
// nri_plugin_dir (name -> content).
func startNRIEnvWith(t *testing.T, dropIn string, preArgs []string, pluginFiles map[string]string) *nriEnv {
	t.Helper()
	plugin := testutil.BuildNRIPlugin(t)
	dir := t.TempDir()
	pluginDir := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(pluginDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if preArgs != nil {
		quoted := make([]string, 0, len(preArgs))
		for _, a := range preArgs {
			quoted = append(quoted, "'"+a+"'")
		}
		script := fmt.Sprintf("#!/bin/sh\nexec %s -log %s %s\n", plugin, filepath.Join(dir, "pre.log"), strings.Join(quoted, " "))
		if err := os.WriteFile(filepath.Join(pluginDir, "10-logger"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range pluginFiles {
		if err := os.WriteFile(filepath.Join(pluginDir, name), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	toml := fmt.Sprintf("[berth.nri]\nnri_plugin_dir = %q\n%s", pluginDir, dropIn)
	e := startCtrEnvWith(t, testutil.DaemonOptions{BinDir: binDir, DropIns: map[string]string{"50-nri.toml": toml}})
	return &nriEnv{ctrEnv: e, plugin: plugin, dir: dir}
}

// connect starts the test plugin as an external plugin IDX-NAME against
// berthd's NRI socket, logging to dir/NAME.log, and waits until berthd
// synchronized it. The process is killed at cleanup.
func (e *nriEnv) connect(t *testing.T, idx, name string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	log := filepath.Join(e.dir, name+".log")
	full := append([]string{"-socket", e.d.NRISocket, "-idx", idx, "-name", name, "-log", log}, args...)
	cmd := exec.Command(e.plugin, full...)
	cmd.Stderr = io.Discard // the stub logs every step
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	eventually(t, "plugin "+name+" synchronized", func() bool {
		return slices.ContainsFunc(testutil.ReadNRIEvents(t, log), func(ev testutil.NRIEvent) bool { return ev.Event == "Synchronize" })
	})
	return cmd, log
}

// eventsOf are the events of the log about pod podID (and its containers).
func eventsOf(t *testing.T, log, podID string) []testutil.NRIEvent {
	t.Helper()
	var out []testutil.NRIEvent
	for _, ev := range testutil.ReadNRIEvents(t, log) {
		if ev.PodID == podID {
			out = append(out, ev)
		}
	}
	return out
}

func eventNames(evs []testutil.NRIEvent) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Event
	}
	return out
}

func findEvent(t *testing.T, evs []testutil.NRIEvent, name, ctrID string) testutil.NRIEvent {
	t.Helper()
	for _, ev := range evs {
		if ev.Event == name && ev.CtrID == ctrID {
			return ev
		}
	}
	t.Fatalf("no %s event for container %q in %v", name, ctrID, eventNames(evs))
	return testutil.NRIEvent{}
}

// nriInfo is the "nri" document of berth info.
type nriInfo struct {
	Enabled bool `json:"enabled"`
	Count   int  `json:"count"`
	Plugins []struct {
		Name string `json:"name"`
	} `json:"plugins"`
}

// berthInfoNRI runs `berth info -o json` and returns its NRI part.
func berthInfoNRI(t *testing.T, d *testutil.Daemon) nriInfo {
	t.Helper()
	out, err := d.CLI(t, "info", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("berth info: %v\n%s", err, out)
	}
	var info nriInfo
	raw := doc["nri"]
	if len(raw) == 0 {
		t.Fatalf("berth info has no nri entry:\n%s", out)
	}
	if err := json.Unmarshal(raw, &info); err != nil {
		t.Fatalf("berth info nri: %v: %s", err, raw)
	}
	return info
}

func (i nriInfo) has(name string) bool {
	return slices.ContainsFunc(i.Plugins, func(p struct {
		Name string `json:"name"`
	}) bool {
		return p.Name == name
	})
}

// podNames are the names of the pods berthd lists.
func podNames(t *testing.T, d *testutil.Daemon) []string {
	t.Helper()
	resp, err := d.Runtime.ListPodSandbox(ctxT(t, 10*time.Second), &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range resp.GetItems() {
		out = append(out, p.GetMetadata().GetName())
	}
	return out
}

// dirEntries counts the entries of a directory (0 when it is missing).
func dirEntries(t *testing.T, p string) int {
	t.Helper()
	ents, err := os.ReadDir(p)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return len(ents)
}
