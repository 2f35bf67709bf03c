package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// CrictlVersion is the cri-tools release whose crictl the CLI
// compatibility tests compare berth's output with.
const CrictlVersion = "v1.37.0"

// Crictl returns the path of a crictl binary built from the Go module
// sigs.k8s.io/cri-tools at CrictlVersion. The first call on a machine
// builds it into ${BERTH_CACHE:-$HOME/.cache/berth}/crictl-<version>
// (a minute or two on 2 cores, through the Go module proxy); later calls
// and other test processes find it there. A failed build fails the test.
func Crictl(t testing.TB) string {
	t.Helper()
	path, err := buildCrictl()
	if err != nil {
		t.Fatalf("crictl %s: %v", CrictlVersion, err)
	}
	return path
}

// buildCrictl builds crictl into the cache unless it is there already.
// A lock file keeps concurrent test processes from building it twice.
func buildCrictl() (string, error) {
	cache := os.Getenv("BERTH_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find the cache dir: %w", err)
		}
		cache = filepath.Join(home, ".cache", "berth")
	}
	bin := filepath.Join(cache, "crictl-"+CrictlVersion)
	if isExecutable(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("create cache dir: %w", err)
	}
	lock, err := os.OpenFile(bin+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("open build lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("take build lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if isExecutable(bin) { // built by another process while we waited
		return bin, nil
	}
	gobin, err := os.MkdirTemp(cache, "crictl-build-")
	if err != nil {
		return "", fmt.Errorf("create build dir: %w", err)
	}
	defer os.RemoveAll(gobin)
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	// go install pkg@version builds in module mode outside any module, so
	// berth's own go.mod and build tags play no part. cri-tools reads its
	// version from this variable; set it so `crictl --version` is honest.
	ldflags := "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=" + strings.TrimPrefix(CrictlVersion, "v")
	cmd := exec.Command(goTool, "install", "-trimpath", "-ldflags", ldflags, "sigs.k8s.io/cri-tools/cmd/crictl@"+CrictlVersion)
	cmd.Dir = gobin
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=-buildvcs=false", "GOWORK=off", "CGO_ENABLED=0")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install sigs.k8s.io/cri-tools/cmd/crictl@%s: %w\n%s", CrictlVersion, err, out)
	}
	if err := os.Rename(filepath.Join(gobin, "crictl"), bin); err != nil {
		return "", fmt.Errorf("move crictl into the cache: %w", err)
	}
	fmt.Fprintf(os.Stderr, "built crictl %s in %s: %s\n", CrictlVersion, time.Since(start).Round(time.Second), bin)
	return bin, nil
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}
