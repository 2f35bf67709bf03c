// Package e2e runs berth's end-to-end tests: the real berthd binary over
// its real CRI socket, with real runc, conmon, CNI and storage. They need
// root; without it they skip.
package e2e

import (
	"os"
	"testing"

	"github.com/berth-cri/berth/internal/testutil"
)

// binDir holds the berthd and berth binaries built once for all tests.
var binDir string

// TestMain builds the binaries once (or takes BERTH_TEST_BIN_DIR's).
func TestMain(m *testing.M) {
	os.Exit(testutil.RunWithBinaries(m, &binDir))
}
