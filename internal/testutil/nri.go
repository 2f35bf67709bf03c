package testutil

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// NRIEvent is one line of the test NRI plugin's event log (see
// internal/testutil/nriplugin).
type NRIEvent struct {
	Event       string            `json:"event"`
	Plugin      string            `json:"plugin"`
	PodID       string            `json:"pod_id"`
	PodName     string            `json:"pod_name"`
	PodUID      string            `json:"pod_uid"`
	PodNS       string            `json:"pod_namespace"`
	PodLabels   map[string]string `json:"pod_labels"`
	CtrID       string            `json:"ctr_id"`
	CtrName     string            `json:"ctr_name"`
	CtrState    string            `json:"ctr_state"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	Args        []string          `json:"args"`
	Env         []string          `json:"env"`
	Mounts      []string          `json:"mounts"`
	Pid         uint32            `json:"pid"`
	CgroupsPath string            `json:"cgroups_path"`
	MemoryLimit int64             `json:"memory_limit"`
	Namespaces  []string          `json:"namespaces"`
	SyncPods    []string          `json:"sync_pods"`
	SyncCtrs    []string          `json:"sync_ctrs"`
}

// ReadNRIEvents reads a test plugin's event log (none yet is no event).
func ReadNRIEvents(t testing.TB, path string) []NRIEvent {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("open NRI event log: %v", err)
	}
	defer f.Close()
	var out []NRIEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev NRIEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("NRI event log line %q: %v", sc.Text(), err)
		}
		out = append(out, ev)
	}
	return out
}

var nriPluginBuild struct {
	once sync.Once
	path string
	err  error
}

// BuildNRIPlugin builds the test NRI plugin (internal/testutil/nriplugin,
// on the nri module's stub package) once per test binary into a temp dir.
func BuildNRIPlugin(t testing.TB) string {
	t.Helper()
	b := &nriPluginBuild
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "berth-nriplugin")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "nriplugin")
		b.err = goBuild(b.path, "github.com/berth-cri/berth/internal/testutil/nriplugin")
	})
	if b.err != nil {
		t.Fatalf("build the test NRI plugin: %v", b.err)
	}
	return b.path
}

func goBuild(out, pkg string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	cmd := exec.Command(goBin, "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if o, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, o)
	}
	return nil
}
