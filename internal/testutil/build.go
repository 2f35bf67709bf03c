package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildFlags is the GOFLAGS value berth's binaries are built with.
const BuildFlags = "-buildvcs=false -tags=containers_image_openpgp,exclude_graphdriver_btrfs," +
	"exclude_graphdriver_devicemapper,containers_image_ostree_stub"

// BuildBinaries builds ./cmd/berthd, ./cmd/berth and the static
// ./cmd/berth-pause (which berthd looks for next to itself) into dir.
// Test packages normally call it through RunWithBinaries.
func BuildBinaries(dir string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create bin dir: %w", err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	cmd := exec.Command(goBin, "build", "-o", dir+"/", "./cmd/berthd", "./cmd/berth")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOFLAGS="+BuildFlags)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build berthd and berth: %w\n%s", err, out)
	}
	// The pause holder runs inside pods from a rootfs with nothing else in
	// it, so it must be static.
	cmd = exec.Command(goBin, "build", "-o", dir+"/", "./cmd/berth-pause")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS="+BuildFlags)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build berth-pause: %w\n%s", err, out)
	}
	return nil
}

// moduleRoot walks up from the working directory to the one holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find module root: no go.mod above the working directory")
		}
		dir = parent
	}
}

// RunWithBinaries is the body of a TestMain for tests that run the real
// binaries: it sets *binDir to BERTH_TEST_BIN_DIR when that names binaries
// built beforehand (quicker when iterating), or else builds them into a
// temporary dir, runs the tests and removes it. It returns the exit code.
func RunWithBinaries(m *testing.M, binDir *string) int {
	if dir := os.Getenv("BERTH_TEST_BIN_DIR"); dir != "" {
		*binDir = dir
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "berth-bin")
	if err == nil {
		err = BuildBinaries(dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	*binDir = dir
	return m.Run()
}
