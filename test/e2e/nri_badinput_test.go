package e2e

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// A file in nri_plugin_dir that is not named IDX-NAME is logged and
// skipped: berthd starts, and the well-named plugin beside it runs.
func TestNRIMalformedPluginFileNameSkipped(t *testing.T) {
	e := startNRIEnvWith(t, "", []string{}, map[string]string{"logger": "#!/bin/sh\nexit 1\n"})
	eventually(t, "the pre-installed plugin synchronized", func() bool {
		return slices.ContainsFunc(testutil.ReadNRIEvents(t, filepath.Join(e.dir, "pre.log")), func(ev testutil.NRIEvent) bool { return ev.Event == "Synchronize" })
	})
	if !strings.Contains(e.d.Log(), "its file name is not IDX-NAME") || !strings.Contains(e.d.Log(), "logger") {
		t.Errorf("berthd did not log the skipped plugin file")
	}
	if info := berthInfoNRI(t, e.d); !info.has("10-logger") {
		t.Errorf("berth info does not list the well-named plugin: %+v", info)
	}
}

// Two plugins registering with one name and index both work and berthd
// logs the clash; requests are served.
func TestNRIPluginRegisteringTwice(t *testing.T) {
	e := startNRIEnv(t, "", nil)
	_, log := e.connect(t, "70", "twin")
	e.connect(t, "70", "twin")
	eventually(t, "both plugins synchronized", func() bool {
		n := 0
		for _, ev := range testutil.ReadNRIEvents(t, log) {
			if ev.Event == "Synchronize" {
				n++
			}
		}
		return n == 2
	})
	eventually(t, "berthd logs the second registration", func() bool {
		return strings.Contains(e.d.Log(), "registered with the name and index of one already connected")
	})
	id := e.run(t, e.config("with-twins", "sleep", "3600"))
	n := 0
	for _, ev := range testutil.ReadNRIEvents(t, log) {
		if ev.Event == "CreateContainer" && ev.CtrID == id {
			n++
		}
	}
	if n != 2 {
		t.Errorf("CreateContainer reached %d of the two plugins", n)
	}
	if info := berthInfoNRI(t, e.d); !info.has("70-twin") {
		t.Errorf("berth info: %+v", info)
	}
}

// A plugin whose answer is larger than the transport carries (ttrpc's
// 4 MiB) cannot send it: its request times out, berthd logs it and drops
// the plugin, and the creation goes on without its adjustment.
func TestNRIHugeAdjustmentDropped(t *testing.T) {
	e := startNRIEnv(t, "", nil)
	e.connect(t, "75", "bulky", "-bulk-env", "300000")
	id := e.run(t, e.config("bulky", "sleep", "3600"))
	out := e.exec(t, id, 10, "sh", "-c", "tr '\\0' '\\n' </proc/1/environ | grep -c NRI_BULK || true")
	if got := strings.TrimSpace(string(out.GetStdout())); got != "0" {
		t.Errorf("container has %s env vars of the oversized adjustment", got)
	}
	if !strings.Contains(e.d.Log(), "plugin disconnected") || !strings.Contains(e.d.Log(), "75-bulky") {
		t.Errorf("berthd did not log the dropped plugin")
	}
	if info := berthInfoNRI(t, e.d); info.has("75-bulky") {
		t.Errorf("berth info still lists the dropped plugin: %+v", info)
	}
}

// An update a plugin asks for a container that does not exist is logged;
// the creation that carried it goes on.
func TestNRIUpdateOfMissingContainer(t *testing.T) {
	e := startNRIEnv(t, "", nil)
	e.connect(t, "76", "confused", "-update-missing")
	id := e.run(t, e.config("carrier", "sleep", "3600"))
	if st := e.status(t, id); st.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container state %v", st.GetState())
	}
	if !strings.Contains(e.d.Log(), "update of a container a plugin asked for failed") || !strings.Contains(e.d.Log(), "no-such-container") {
		t.Errorf("berthd did not log the update of the missing container")
	}
}
