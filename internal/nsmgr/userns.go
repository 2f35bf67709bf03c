package nsmgr

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/idmap"
)

// readyLine is what a helper in a new user namespace prints once its
// namespaces are set up.
const readyLine = "ready\n"

// runUserNSChild runs the helper in a new user namespace (mappings m)
// together with the pod's other new namespaces, which the kernel then
// makes owned by it. The helper runs as root of that namespace, i.e. as
// the pod's mapped host uid; it is started through an fd of this binary
// (/proc/self/fd/3) since that uid may not search the directories the
// binary lies in. It cannot mount on the host, so berthd binds the
// helper's /proc/<pid>/ns/<kind> onto the targets while the helper
// waits for stdin to close.
func (m *Manager) runUserNSChild(ctx context.Context, flags uintptr, spec childSpec, mp idmap.Mappings) (err error) {
	in, err := json.Marshal(spec)
	if err != nil {
		return fmt.Errorf("encode pinning request: %w", err)
	}
	exe, err := os.Open(m.exe)
	if err != nil {
		return fmt.Errorf("pin namespaces: open helper: %w", err)
	}
	defer exe.Close()
	cmd := exec.CommandContext(ctx, "/proc/self/fd/3", ChildCommand)
	cmd.ExtraFiles = []*os.File{exe}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  flags,
		UidMappings: idmap.SysMappings(mp.UIDs),
		GidMappings: idmap.SysMappings(mp.GIDs),
		// Containers set their supplementary groups, so setgroups(2)
		// stays allowed in the namespace; the helper drops berthd's.
		GidMappingsEnableSetgroups: true,
		Credential:                 &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}},
		Pdeathsig:                  syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pin namespaces: start helper in a user namespace: %w", err)
	}
	defer func() {
		_ = stdin.Close()
		werr := cmd.Wait()
		if err == nil && werr != nil {
			err = fmt.Errorf("pin namespaces: helper: %w: %s", werr, strings.TrimSpace(stderr.String()))
		}
	}()
	if _, err := stdin.Write(in); err != nil {
		return fmt.Errorf("pin namespaces: send request: %w", err)
	}
	line, rerr := bufio.NewReader(stdout).ReadString('\n')
	if line != readyLine {
		werr := cmd.Wait()
		msg := strings.TrimSpace(stderr.String())
		var ee *exec.ExitError
		if errors.As(werr, &ee) && ee.ExitCode() == exitBadSysctl {
			return fmt.Errorf("pin namespaces: %s: %w", msg, errdefs.ErrInvalidArgument)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("pin namespaces: %w", ctx.Err())
		}
		return fmt.Errorf("pin namespaces in a user namespace: %w: %s", errors.Join(rerr, werr), msg)
	}
	pid := cmd.Process.Pid
	for kind, target := range spec.Targets {
		src := fmt.Sprintf("/proc/%d/ns/%s", pid, kind)
		if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("pin namespaces: bind %s on %s: %w", src, target, err)
		}
	}
	return nil
}
