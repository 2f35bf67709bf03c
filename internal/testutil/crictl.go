package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// CrictlVersion is the cri-tools release the tests build crictl from:
// the one matching berth's k8s.io/cri-api.
const CrictlVersion = "v1.37.0"

// crictlModule is the throwaway module crictl is built in: it only
// requires cri-tools, whose go.mod then picks every other version.
const crictlModule = `module berth.test/crictl

go 1.24

require sigs.k8s.io/cri-tools ` + CrictlVersion + `
`

// BuildCrictl returns the path of a crictl built from its Go module
// (sigs.k8s.io/cri-tools/cmd/crictl at CrictlVersion), building it once
// into the cache directory ($BERTH_CACHE, else ~/.cache/berth) like
// test/kubelet/build does for the kubelet. A cold build fetches the
// module through the Go proxy and takes a minute or two.
func BuildCrictl(t testing.TB) string {
	t.Helper()
	bin, err := buildCrictl()
	if err != nil {
		t.Fatalf("build crictl: %v", err)
	}
	return bin
}

func buildCrictl() (string, error) {
	cache, err := cacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(cache, "crictl-"+CrictlVersion)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	// Test binaries of several packages may ask at once: one builds, the
	// others wait for it and then find the binary.
	lock, err := os.OpenFile(bin+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", fmt.Errorf("open build lock: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return "", fmt.Errorf("take build lock: %w", err)
	}
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	mod, err := os.MkdirTemp("", "crictl-build")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(mod)
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte(crictlModule), 0o644); err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	tmp := bin + ".tmp"
	cmd := exec.Command(goBin, "build", "-trimpath",
		"-ldflags", "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version="+CrictlVersion,
		"-o", tmp, "sigs.k8s.io/cri-tools/cmd/crictl")
	cmd.Dir = mod
	// -mod=mod lets go fill in go.sum and the indirect requirements.
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod -buildvcs=false", "GOWORK=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build crictl %s: %w\n%s", CrictlVersion, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	return bin, nil
}

// cacheDir is where built tools are kept between test runs.
func cacheDir() (string, error) {
	dir := os.Getenv("BERTH_CACHE")
	if dir == "" {
		home, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("find cache dir: %w", err)
		}
		dir = filepath.Join(home, "berth")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create cache dir: %w", err)
	}
	return dir, nil
}
