// Package e2e runs berth's end-to-end tests: the real berthd binary over
// its real CRI socket, with real runc, conmon, CNI and storage. They need
// root; without it they skip.
package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/berth-cri/berth/internal/testutil"
)

// binDir holds the berthd and berth binaries built once for all tests.
var binDir string

// TestMain builds the binaries once. BERTH_TEST_BIN_DIR names a dir of
// binaries built beforehand instead (quicker when iterating).
func TestMain(m *testing.M) {
	if dir := os.Getenv("BERTH_TEST_BIN_DIR"); dir != "" {
		binDir = dir
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "berth-bin")
	if err == nil {
		err = testutil.BuildBinaries(dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
