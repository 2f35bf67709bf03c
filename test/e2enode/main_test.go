//go:build e2enode

// Package e2enode runs the kubelet's own node e2e suite
// (k8s.io/kubernetes/test/e2e_node, the same release as the kubelet e2e)
// against a real berthd: the suite starts its in-process etcd and API
// server and a kubelet pointed at berthd's socket, and its specs create
// pods through the API. berth's side is here: the offline test images
// served from a registry on 127.0.0.1, berthd, the host adaptations of the
// kubelet, and the JUnit summary.
//
// It lives behind the build tag "e2enode" (like test/kubelet's "kubelet")
// because it uses internal/testutil; the suite, the ginkgo CLI, agnhost
// and the kubelet come from test/e2enode/build (a throwaway module, so
// berth's go.mod never sees k8s.io/kubernetes). Run it with
// `make e2e-node` (test/e2enode/run.sh), which builds everything outside
// /tmp/berth-runtime.lock and holds the lock only for the run.
//
// Two tests, run as separate steps:
//
//	TestBuildImages   writes the offline images as an OCI layout to $E2E_NODE_IMAGES
//	TestNodeE2E       serves them, starts berthd and runs the suite
//
// Environment: E2E_NODE_BIN (build.sh's output dir), E2E_NODE_IMAGES,
// E2E_NODE_REPORT (report dir: JUnit, logs), E2E_NODE_FOCUS,
// E2E_NODE_SKIP (ginkgo regexps), E2E_NODE_PROCS (parallel ginkgo
// processes), E2E_NODE_TIMEOUT (ginkgo --timeout), E2E_NODE_KNOWN (file
// of spec names whose failure is documented in docs/conformance.md).
package e2enode

import (
	"os"
	"testing"

	"github.com/berth-cri/berth/internal/testutil"
)

// binDir holds berthd, berth and berth-pause.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(testutil.RunWithBinaries(m, &binDir))
}

// mustEnv returns $name or fails the test.
func mustEnv(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set (test/e2enode/run.sh sets it)", name)
	}
	return v
}
