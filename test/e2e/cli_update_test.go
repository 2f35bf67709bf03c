package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// updResourcesYAML gives a container a memory limit and CPU shares.
const updResourcesYAML = `linux:
  resources:
    memory_limit_in_bytes: 134217728
    cpu_shares: 512
`

// resourcesReport is what berth inspect says of a container's limits,
// and what its cgroup holds.
type resourcesReport struct {
	statusMemory, statusShares int64 // ContainerStatus.resources
	specMemory                 int64 // the OCI spec in the verbose info
	specShares                 uint64
	cgroupMemory               int64
}

// inspectResources runs berth inspect on id and reads the container's
// memory limit from its cgroup.
func inspectResources(t *testing.T, d *testutil.Daemon, id string) resourcesReport {
	t.Helper()
	var doc struct {
		Status json.RawMessage `json:"status"`
		Info   struct {
			CgroupsPath string `json:"cgroupsPath"`
			RuntimeSpec struct {
				Linux struct {
					Resources struct {
						Memory struct {
							Limit int64 `json:"limit"`
						} `json:"memory"`
						CPU struct {
							Shares uint64 `json:"shares"`
						} `json:"cpu"`
					} `json:"resources"`
				} `json:"linux"`
			} `json:"runtimeSpec"`
		} `json:"info"`
	}
	out := cli(t, d, "inspect", id)
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	// crictl's document: int64 fields as JSON strings, as protojson prints them.
	var st struct {
		Resources struct {
			Linux struct {
				MemoryLimitInBytes json.Number `json:"memoryLimitInBytes"`
				CPUShares          json.Number `json:"cpuShares"`
			} `json:"linux"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(doc.Status, &st); err != nil {
		t.Fatalf("inspect status: %v", err)
	}
	statusMemory, _ := st.Resources.Linux.MemoryLimitInBytes.Int64()
	statusShares, _ := st.Resources.Linux.CPUShares.Int64()
	res := doc.Info.RuntimeSpec.Linux.Resources
	return resourcesReport{
		statusMemory: statusMemory,
		statusShares: statusShares,
		specMemory:   res.Memory.Limit,
		specShares:   res.CPU.Shares,
		cgroupMemory: cgroupMemoryLimit(t, doc.Info.CgroupsPath),
	}
}

// cgroupMemoryLimit reads the memory limit of a cgroupfs cgroup path,
// on cgroup v1 or v2.
func cgroupMemoryLimit(t *testing.T, cgroupsPath string) int64 {
	t.Helper()
	var st unix.Statfs_t
	file := filepath.Join("/sys/fs/cgroup/memory", cgroupsPath, "memory.limit_in_bytes")
	if unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		file = filepath.Join("/sys/fs/cgroup", cgroupsPath, "memory.max")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("read the container's memory limit: %v", err)
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return v
}

// TestCLIUpdateReportsWhatIsInForce: after berth update --memory, berth
// inspect shows the new limit in ContainerStatus.resources and in the
// runtime spec, the cgroup holds it, the settings not given are kept,
// and all of it survives a berthd restart. Before, the spec kept the
// creation limit, and an update of memory alone over CRI reported CPU
// shares of 0 while the cgroup kept 512.
func TestCLIUpdateReportsWhatIsInForce(t *testing.T) {
	d, podFile, _, ref := cliContainerSetup(t, "")
	ctrFile := cliWrite(t, t.TempDir(), "upd.yaml", cliCtrYAML("upd", ref, "exec sleep 1000")+updResourcesYAML)
	id := cliIDs(t, cli(t, d, "run", ctrFile, podFile))[0]
	if got, want := inspectResources(t, d, id), (resourcesReport{128 << 20, 512, 128 << 20, 512, 128 << 20}); got != want {
		t.Fatalf("as created: %+v, want %+v", got, want)
	}

	// 64M is 64,000,000 bytes: a whole number of pages, so the kernel
	// keeps it as given.
	if out := cli(t, d, "update", "--memory", "64M", id[:12]); out != id+"\n" {
		t.Errorf("update printed %q", out)
	}
	want := resourcesReport{64_000_000, 512, 64_000_000, 512, 64_000_000}
	if got := inspectResources(t, d, id); got != want {
		t.Errorf("after update: %+v, want %+v", got, want)
	}
	d.Restart(t)
	if got := inspectResources(t, d, id); got != want {
		t.Errorf("after a berthd restart: %+v, want %+v", got, want)
	}

	// The kubelet and crictl update send only the settings they set: the
	// others stay as the cgroup has them, in what berth reports too.
	_, err := d.Runtime.UpdateContainerResources(ctxT(t, 30*time.Second), &runtimeapi.UpdateContainerResourcesRequest{
		ContainerId: id, Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 96 << 20},
	})
	if err != nil {
		t.Fatal(err)
	}
	want = resourcesReport{96 << 20, 512, 96 << 20, 512, 96 << 20}
	if got := inspectResources(t, d, id); got != want {
		t.Errorf("after an update of memory alone: %+v, want %+v", got, want)
	}
}

// TestCLIUpdateFailsWhenNotRecorded: an update whose new resources
// cannot be written to the container's status record fails, and leaves
// the cgroup and everything berth reports at the old limit. Before, it
// succeeded with the record left stale, so a restart reported the old
// limit while the cgroup held the new one.
func TestCLIUpdateFailsWhenNotRecorded(t *testing.T) {
	d, podFile, _, ref := cliContainerSetup(t, "")
	ctrFile := cliWrite(t, t.TempDir(), "upd.yaml", cliCtrYAML("upd", ref, "exec sleep 1000")+updResourcesYAML)
	id := cliIDs(t, cli(t, d, "run", ctrFile, podFile))[0]
	before := inspectResources(t, d, id)

	// A directory in place of status.json: the atomic rename over it fails.
	status := filepath.Join(d.Dir, "state", "containers", id, "status.json")
	if err := os.Rename(status, status+".saved"); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(status, "blocker"), 0o755); err != nil {
		t.Fatal(err)
	}
	cliFail(t, d, "status.json", "update", "--memory", "64M", id[:12])
	if got := inspectResources(t, d, id); got != before {
		t.Errorf("after a failed update: %+v, want as before %+v", got, before)
	}

	if err := os.RemoveAll(status); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(status+".saved", status); err != nil {
		t.Fatal(err)
	}
	cli(t, d, "update", "--memory", "64M", id[:12])
	if got := inspectResources(t, d, id); got.statusMemory != 64_000_000 || got.specMemory != 64_000_000 || got.cgroupMemory != 64_000_000 {
		t.Errorf("update once the record is writable: %+v", got)
	}
}
