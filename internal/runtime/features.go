package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/idmap"
)

// Features is what one OCI runtime can do on this host, beyond the
// basics every runtime berth runs has.
type Features struct {
	// RecursiveReadOnly: the runtime knows the "rro" mount option and
	// the kernel has mount_setattr (5.12), which rro is made with.
	RecursiveReadOnly bool
	// UserNamespaces: pods can have their own user namespace, which
	// needs the host to make idmapped mounts and overlays on idmapped
	// layers (berth makes them; the runtime only joins the namespace).
	UserNamespaces bool
}

// FeatureProbe asks each runtime for its features once, on first use,
// and remembers the answer (per runtime binary).
type FeatureProbe struct {
	// kernel returns the running kernel's release; uname by default.
	kernel func() (string, error)
	// userns probes the host for user namespaces with idmapped
	// overlays; idmap.Probe in a temporary directory by default.
	userns func() error

	mu    sync.Mutex
	known map[string]Features
}

// NewFeatureProbe returns a probe that has asked nothing yet.
func NewFeatureProbe() *FeatureProbe {
	return &FeatureProbe{kernel: kernelRelease, known: map[string]Features{},
		userns: func() error { return idmap.Probe(os.TempDir()) }}
}

// Of returns r's features, running `r features` the first time. A
// runtime that cannot say (an old runc has no features command) has
// none. A probe cut short by ctx is not remembered.
func (p *FeatureProbe) Of(ctx context.Context, r OCI) Features {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f, ok := p.known[r.Path]; ok {
		return f
	}
	f, err := p.probe(ctx, r)
	if err != nil && ctx.Err() != nil {
		return f
	}
	p.known[r.Path] = f
	return f
}

func (p *FeatureProbe) probe(ctx context.Context, r OCI) (Features, error) {
	var f Features
	if p.userns != nil {
		// Once per runtime: it costs a user namespace and two mounts.
		f.UserNamespaces = p.userns() == nil
	}
	out, err := r.Command(ctx, "features").Output()
	if err != nil {
		return f, fmt.Errorf("%s features: %w", r.Path, err)
	}
	opts, err := mountOptions(out)
	if err != nil {
		return f, err
	}
	release, err := p.kernel()
	if err != nil {
		return f, err
	}
	f.RecursiveReadOnly = slices.Contains(opts, "rro") && kernelAtLeast(release, 5, 12)
	return f, nil
}

// mountOptions reads the mount options from `runc features` output (the
// OCI runtime features document).
func mountOptions(out []byte) ([]string, error) {
	var doc struct {
		MountOptions []string `json:"mountOptions"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("runtime features: %w", err)
	}
	return doc.MountOptions, nil
}

func kernelRelease() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("uname: %w", err)
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}

// kernelAtLeast compares a release such as "6.1.0-18-amd64" with
// major.minor; an unreadable release is too old.
func kernelAtLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	maj, err1 := strconv.Atoi(parts[0])
	minStr := parts[1]
	if i := strings.IndexFunc(minStr, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minStr = minStr[:i]
	}
	mnr, err2 := strconv.Atoi(minStr)
	if err1 != nil || err2 != nil {
		return false
	}
	return maj > major || (maj == major && mnr >= minor)
}
