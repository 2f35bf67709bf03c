// Package checkpoint answers whether this node can checkpoint and restore
// containers. Checkpointing needs CRIU; berth probes it once, on first
// use, with `criu check`, and reports what is missing in words an
// operator can act on. berth has no checkpoint implementation yet, so a
// working CRIU still leaves the RPCs unimplemented.
package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Support is the outcome of the CRIU probe.
type Support struct {
	// CRIU is true when `criu check` passed.
	CRIU bool `json:"criu"`
	// CRIUPath is the criu binary found, empty when none is installed.
	CRIUPath string `json:"criuPath,omitempty"`
	// Reason says why checkpointing is not available.
	Reason string `json:"reason"`
}

// Implemented is false: berth does not write or read checkpoint archives
// yet, whatever CRIU can do.
const Implemented = false

// Prober runs the CRIU probe once and remembers the answer.
type Prober struct {
	// binary is the name or path looked up for criu.
	binary  string
	timeout time.Duration
	once    sync.Once
	support Support
}

// NewProber returns a prober for the criu binary (a name looked up in
// PATH, or a path); "" means "criu".
func NewProber(binary string) *Prober {
	if binary == "" {
		binary = "criu"
	}
	return &Prober{binary: binary, timeout: 30 * time.Second}
}

// Support probes CRIU on the first call and returns the same answer after.
func (p *Prober) Support() Support {
	p.once.Do(func() { p.support = p.probe() })
	return p.support
}

func (p *Prober) probe() Support {
	path, err := exec.LookPath(p.binary)
	if err != nil {
		return Support{Reason: fmt.Sprintf("checkpoint/restore needs CRIU, and CRIU is not installed (%q not found in PATH)", p.binary)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, path, "check")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		detail := lastLine(out.String())
		if detail == "" {
			detail = err.Error()
		}
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return Support{CRIUPath: path, Reason: fmt.Sprintf("checkpoint/restore needs CRIU, and `%s check` fails on this node: %s", path, detail)}
		}
		return Support{CRIUPath: path, Reason: fmt.Sprintf("checkpoint/restore needs CRIU, and `%s check` could not run: %s", path, detail)}
	}
	return Support{CRIU: true, CRIUPath: path, Reason: "CRIU works on this node, but berth does not implement checkpoint/restore yet"}
}

// lastLine is the last non-empty line of criu's output: its verdict or
// the error that stopped it.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
