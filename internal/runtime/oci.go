package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"go.opentelemetry.io/otel/attribute"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/tracing"
)

// Runtime runs the OCI runtime (runc or a compatible one) directly, for
// everything conmon is not needed for: start, kill, delete, state and
// update are short calls whose output berth reads itself. They live here
// rather than in a separate package because they share the process and
// error conventions of the conmon calls; the container manager never
// builds a runtime command line.
type OCI struct {
	Path string
	// Root is the runtime's state directory (--root); "" for its default.
	Root string
	// SystemdCgroup passes --systemd-cgroup.
	SystemdCgroup bool
}

func (r OCI) globalArgs() []string {
	var args []string
	if r.Root != "" {
		args = append(args, "--root", r.Root)
	}
	if r.SystemdCgroup {
		args = append(args, "--systemd-cgroup")
	}
	return args
}

// conmonArgs hands the global arguments to conmon, which puts them right
// after the runtime path (and adds --systemd-cgroup itself with -s).
func (r OCI) conmonArgs() []string {
	var args []string
	if r.Root != "" {
		args = append(args, "--runtime-arg", "--root="+r.Root)
	}
	if r.SystemdCgroup {
		args = append(args, "-s")
	}
	return args
}

// ErrNotExist is wrapped by errors about a container the runtime does
// not know (already deleted, or never created).
var ErrNotExist = fmt.Errorf("container does not exist in the runtime: %w", errdefs.ErrNotFound)

func (r OCI) run(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	cmd := r.Command(ctx, args...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		msg := runtimeMessage(stderr.String())
		if strings.Contains(msg, "does not exist") {
			return nil, fmt.Errorf("%s %s: %s: %w", r.Path, args[0], msg, ErrNotExist)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s %s: %w", r.Path, args[0], ctx.Err())
		}
		return nil, fmt.Errorf("%s %s: %w: %s", r.Path, args[0], err, msg)
	}
	return out.Bytes(), nil
}

// runtimeMessage trims runc's stderr to its error text: runc logs in
// logrus' text format, `time=… level=error msg="…"`, and warnings (about
// the freezer, OOM counts, …) may come before or after the error. The
// last error line wins, else the last line with a message.
func runtimeMessage(s string) string {
	s = strings.TrimSpace(s)
	lines := strings.Split(s, "\n")
	last := ""
	for i := len(lines) - 1; i >= 0; i-- {
		l := lines[i]
		j := strings.Index(l, `msg="`)
		if j < 0 {
			continue
		}
		// Other fields may follow the quoted message.
		m := strings.TrimSuffix(l[j+5:], `"`)
		if q, err := strconv.QuotedPrefix(l[j+4:]); err == nil {
			m, _ = strconv.Unquote(q)
		}
		if strings.Contains(l, "level=error") || strings.Contains(l, "level=fatal") {
			return m
		}
		if last == "" {
			last = m
		}
	}
	if last != "" {
		return last
	}
	if s == "" {
		return "(no output)"
	}
	return s
}

// Start runs the container's process (`runc start`).
func (r OCI) Start(ctx context.Context, id string) (err error) {
	ctx, span := tracing.Start(ctx, "runc start", attribute.String("container.id", id))
	defer func() { tracing.End(span, err) }()
	_, err = r.run(ctx, nil, "start", id)
	return err
}

// Kill sends sig to the container's init, or with all to every process
// in its cgroup (needed when it shares the host's PID namespace).
func (r OCI) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	_, err := r.run(ctx, nil, append(args, id, strconv.Itoa(int(sig)))...)
	return err
}

// Delete removes the runtime's state and cgroup of a stopped container;
// force also kills a running one. Deleting an unknown container is not
// an error.
func (r OCI) Delete(ctx context.Context, id string, force bool) error {
	args := []string{"delete"}
	if force {
		args = append(args, "--force")
	}
	_, err := r.run(ctx, nil, append(args, id)...)
	if errors.Is(err, ErrNotExist) {
		return nil
	}
	return err
}

// State is the part of `runc state` berth reads.
type State struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"` // created, running, paused, stopped
	Bundle string `json:"bundle"`
}

// State asks the runtime about a container.
func (r OCI) State(ctx context.Context, id string) (*State, error) {
	out, err := r.run(ctx, nil, "state", id)
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("parse runtime state of %s: %w", id, err)
	}
	return &st, nil
}

// Update applies new cgroup resources to a running container.
func (r OCI) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	data, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode resources: %w", err)
	}
	_, err = r.run(ctx, data, "update", "--resources", "-", id)
	return err
}

// List returns the containers the runtime knows (`runc list`).
func (r OCI) List(ctx context.Context) ([]State, error) {
	out, err := r.run(ctx, nil, "list", "--format", "json")
	if err != nil {
		return nil, err
	}
	var sts []State
	if len(bytes.TrimSpace(out)) == 0 || string(bytes.TrimSpace(out)) == "null" {
		return nil, nil
	}
	if err := json.Unmarshal(out, &sts); err != nil {
		return nil, fmt.Errorf("parse runtime list: %w", err)
	}
	return sts, nil
}

// ForHandler is the OCI runtime of a configured runtime handler: the one
// place a handler's settings become a runtime command line.
func ForHandler(cfg *config.Config, h config.Handler) OCI {
	return OCI{Path: h.RuntimePath, Root: h.RuntimeRoot, SystemdCgroup: cfg.Berth.Runtime.CgroupManager == "systemd"}
}

// Command is the runtime invoked with its global options followed by
// args, for callers that wire its stdio themselves (streaming exec).
func (r OCI) Command(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, r.Path, append(r.globalArgs(), args...)...)
}

// Configured lists the distinct runtimes of the configured handlers, for
// the orphan sweep and wipe, which look at everything berth may have run.
func Configured(cfg *config.Config) []OCI {
	seen := map[string]bool{}
	var out []OCI
	for _, h := range cfg.Berth.Runtime.Runtimes {
		key := h.RuntimePath + "\x00" + h.RuntimeRoot
		if seen[key] || h.RuntimePath == "" {
			continue
		}
		seen[key] = true
		out = append(out, ForHandler(cfg, h))
	}
	return out
}
