package container

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"

	"github.com/berth-cri/berth/internal/errdefs"
)

// appArmorProfiles lists the profiles the kernel has loaded, one
// "name (mode)" a line.
const appArmorProfiles = "/sys/kernel/security/apparmor/profiles"

// appArmor makes sure the profile a container is given is loaded: runc
// fails on an unknown one with a message that names nothing useful. The
// configured default profile is loaded from berth's built-in text when
// missing (as CRI-O and containerd load theirs); a localhost profile is
// the node operator's to load, so a missing one is refused.
type appArmor struct {
	// profiles reads the kernel's list; load feeds a profile to
	// apparmor_parser. Both are replaced in unit tests.
	profiles func() ([]byte, error)
	load     func(ctx context.Context, text string) error

	mu sync.Mutex // one load at a time
}

func newAppArmor() *appArmor {
	return &appArmor{
		profiles: func() ([]byte, error) { return os.ReadFile(appArmorProfiles) },
		load:     loadWithParser,
	}
}

// ensure checks that profile is loaded, loading the built-in default
// under defaultName when that is the one missing. "" and "unconfined"
// need nothing.
func (a *appArmor) ensure(ctx context.Context, profile, defaultName string) error {
	if profile == "" || profile == "unconfined" {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	loaded, err := a.loaded(profile)
	if err != nil {
		return err
	}
	if loaded {
		return nil
	}
	if profile != defaultName {
		return fmt.Errorf("apparmor profile %q is not loaded on this node: %w", profile, errdefs.ErrFailedPrecondition)
	}
	if err := a.load(ctx, defaultAppArmorProfile(profile)); err != nil {
		return fmt.Errorf("load the default apparmor profile %q: %w", profile, err)
	}
	return nil
}

func (a *appArmor) loaded(profile string) (bool, error) {
	data, err := a.profiles()
	if err != nil {
		return false, fmt.Errorf("read the loaded apparmor profiles: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, _, _ := strings.Cut(sc.Text(), " (")
		if name == profile {
			return true, nil
		}
	}
	return false, sc.Err()
}

// loadWithParser loads (or replaces) a profile read from stdin, keeping
// it out of the parser's cache.
func loadWithParser(ctx context.Context, text string) error {
	cmd := exec.CommandContext(ctx, "apparmor_parser", "-Kr")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apparmor_parser: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// defaultAppArmorProfile is berth's default profile: files, network,
// capabilities and signals within the profile as usual, but no mounts,
// no writes under /proc/sys or /sys (both read-only for an unprivileged
// container anyway: this holds if a mount is remade), and nothing of the
// kernel's memory, sysrq, firmware or security files.
func defaultAppArmorProfile(name string) string {
	return `#include <tunables/global>

profile ` + name + ` flags=(attach_disconnected,mediate_deleted) {
  #include <abstractions/base>

  file,
  network,
  capability,
  umount,
  signal (receive) peer=unconfined,
  signal (send,receive) peer=` + name + `,
  ptrace (trace,read,tracedby,readby) peer=` + name + `,

  deny mount,
  deny @{PROC}/sys/** wl,
  deny @{PROC}/{kcore,kmem,mem,sysrq-trigger} rwklx,
  deny /sys/** wl,
  deny /sys/firmware/** rwklx,
  deny /sys/kernel/security/** rwklx,
}
`
}
