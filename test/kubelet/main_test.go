//go:build kubelet

// Package kubelet runs a real kubelet (v1.37), standalone (static pods,
// no API server), against a real berthd and checks the scenarios of
// issues 9 and 17 through the kubelet's own HTTP API (/pods,
// /stats/summary, /containerLogs, /run, /metrics), never by asking berth
// except for berthd's operation metrics (which RPCs the kubelet called).
//
// The tests live in berth's module, behind the build tag "kubelet" so that
// `go test ./...` skips them, because they use internal/testutil (berthd
// harness, offline busybox images, in-test registry). The kubelet itself
// is built from k8s.io/kubernetes in the separate throwaway module
// test/kubelet/build (see build.sh there), so berth's go.mod never sees
// it. Run them with `make e2e-kubelet`, or by hand:
//
//	KUBELET=$(test/kubelet/build/build.sh) go test -tags kubelet -v ./test/kubelet/
package kubelet

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/berth-cri/berth/internal/testutil"
)

var (
	// binDir holds berthd, berth and berth-pause.
	binDir string
	// kubeletBin is the kubelet binary ($KUBELET).
	kubeletBin string
	// kubeletVersion is what `kubelet --version` prints.
	kubeletVersion string
	// devicePluginBin is the test device plugin (build/deviceplugin),
	// built before any scenario runs: compiled inside the CDI scenario,
	// it competed for the 2 CPUs with every other scenario.
	devicePluginBin string
)

// TestMain builds berth's binaries once (BERTH_TEST_BIN_DIR names a dir of
// binaries built beforehand instead) and checks $KUBELET.
func TestMain(m *testing.M) {
	kubeletBin = os.Getenv("KUBELET")
	if kubeletBin == "" {
		fmt.Fprintln(os.Stderr, "KUBELET is not set: build one with test/kubelet/build/build.sh (make e2e-kubelet does)")
		os.Exit(1)
	}
	out, err := exec.Command(kubeletBin, "--version").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s --version: %v\n%s", kubeletBin, err, out)
		os.Exit(1)
	}
	kubeletVersion = strings.TrimSpace(string(out))
	fmt.Printf("kubelet under test: %s (%s)\n", kubeletVersion, kubeletBin)
	out, err = exec.Command("build/build.sh", "deviceplugin").Output()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build the test device plugin: %v\n%s", err, exitStderr(err))
		os.Exit(1)
	}
	devicePluginBin = strings.TrimSpace(string(out))
	os.Exit(testutil.RunWithBinaries(m, &binDir))
}

func exitStderr(err error) []byte {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.Stderr
	}
	return nil
}
