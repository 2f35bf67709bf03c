package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/berth-cri/berth/internal/runtime"
	"github.com/berth-cri/berth/internal/testutil"
)

// leftovers counts what berth has made on the host for one daemon: the
// pod-side snapshot (mounts, veths, iptables, IP allocations, namespace
// pins, pod dirs) plus writable layers in storage, conmon processes,
// bundles, records and runc containers.
func leftovers(t *testing.T, d *testutil.Daemon, tn *testNet) hostState {
	t.Helper()
	s := snapshotHost(t, d, tn)
	for id := range runtime.FindConmons(filepath.Join(d.Dir, "run", "exits")) {
		s["conmons"] = append(s["conmons"], id)
	}
	for _, sub := range []string{"state/containers", "run/containers", "runc"} {
		ents, _ := os.ReadDir(filepath.Join(d.Dir, sub))
		for _, e := range ents {
			s[sub] = append(s[sub], e.Name())
		}
	}
	s["storage"] = storageContainers(t, d)
	for k, v := range s {
		sort.Strings(v)
		s[k] = v
	}
	return s
}

func storageContainers(t *testing.T, d *testutil.Daemon) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(d.Dir, "storage", "overlay-containers", "containers.json"))
	if err != nil {
		return nil
	}
	var ctrs []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(data, &ctrs); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range ctrs {
		ids = append(ids, c.ID)
	}
	return ids
}

// counterScript prints consecutive numbers every 10 ms.
const counterScript = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.01; done"

// assertNoGap checks that a counter container's log holds consecutive
// numbers from 0, and returns how many.
func assertNoGap(t *testing.T, path string) int {
	t.Helper()
	lines := logLines(t, path)
	for i, l := range lines {
		f := strings.Fields(l)
		n, err := strconv.Atoi(f[len(f)-1])
		if err != nil || n != i {
			t.Fatalf("log line %d is %q, want %d (a gap)", i, l, i)
		}
	}
	return len(lines)
}

// conmonOf finds the conmon of container id.
func conmonOf(t *testing.T, d *testutil.Daemon, id string) runtime.Proc {
	t.Helper()
	p, ok := runtime.FindConmons(filepath.Join(d.Dir, "run", "exits"))[id]
	if !ok {
		t.Fatalf("no conmon for %s", id)
	}
	return p
}

// berthdWipe runs `berthd wipe` against the daemon's config.
func berthdWipe(t *testing.T, d *testutil.Daemon) string {
	t.Helper()
	out, err := d.Command("wipe").CombinedOutput()
	if err != nil {
		t.Fatalf("berthd wipe: %v: %s", err, out)
	}
	return string(out)
}
