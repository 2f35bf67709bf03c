package container

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/runtime"
	"github.com/berth-cri/berth/internal/spec"
	"github.com/berth-cri/berth/internal/store"
)

// MaxExecOutput caps the output of ExecSync, stdout and stderr together
// (CVE-2022-1708): the rest of a chatty command's output is read and
// dropped. The whole reply must fit the 16 MiB the kubelet and crictl
// accept by default, so 64 KiB are left for the message's framing and
// the timeout note.
const MaxExecOutput = 16<<20 - 64<<10

// reopenTimeout bounds the wait for conmon to recreate the log file.
const reopenTimeout = 10 * time.Second

// running returns c if it runs, or a FailedPrecondition.
func (m *Manager) running(id string) (*container, Status, error) {
	c, err := m.get(id)
	if err != nil {
		return nil, Status{}, err
	}
	m.checkConmon(c)
	st := c.snapshot()
	if st.State != StateRunning {
		return nil, st, fmt.Errorf("container %s is %s, not running: %w", c.meta.ID, st.State, errdefs.ErrFailedPrecondition)
	}
	return c, st, nil
}

// ExecResult is ExecSync's answer.
type ExecResult = runtime.ExecResult

// ExecSync runs cmd in the container and returns its output and exit
// code. A timeout (seconds, 0 for none) kills the command and is
// reported as a non-zero exit, not an error: kubelet probes rely on it.
func (m *Manager) ExecSync(ctx context.Context, id string, cmd []string, timeout int64) (*ExecResult, error) {
	if len(cmd) == 0 || cmd[0] == "" {
		return nil, fmt.Errorf("exec: the command is empty: %w", errdefs.ErrInvalidArgument)
	}
	if timeout < 0 {
		return nil, fmt.Errorf("exec: negative timeout: %w", errdefs.ErrInvalidArgument)
	}
	for _, a := range cmd {
		if strings.ContainsRune(a, 0) {
			return nil, fmt.Errorf("exec: argument contains a NUL byte: %w", errdefs.ErrInvalidArgument)
		}
	}
	c, _, err := m.running(id)
	if err != nil {
		return nil, err
	}
	p, err := m.Process(c.meta.ID)
	if err != nil {
		return nil, err
	}
	p.Args = cmd
	p.Terminal = false
	p.ConsoleSize = nil
	return m.oci(c.meta.Runtime).ExecSync(ctx, c.meta.ID, p, time.Duration(timeout)*time.Second, MaxExecOutput)
}

// Process returns a copy of the container's OCI process, the template of
// every exec: same user, environment, working dir, capabilities, LSM
// profiles and rlimits.
func (m *Manager) Process(id string) (*specs.Process, error) {
	c, err := m.get(id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	p := c.process
	c.mu.Unlock()
	if p == nil {
		data, err := os.ReadFile(filepath.Join(c.meta.Bundle, "config.json"))
		if err != nil {
			return nil, fmt.Errorf("read spec of %s: %w", c.meta.ID, err)
		}
		var s specs.Spec
		if err := json.Unmarshal(data, &s); err != nil || s.Process == nil {
			return nil, fmt.Errorf("spec of %s has no process: %v", c.meta.ID, err)
		}
		p = s.Process
		c.mu.Lock()
		c.process = p
		c.mu.Unlock()
	}
	// A deep copy through JSON: callers change Args and Terminal.
	data, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	var out specs.Process
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UpdateResources applies new cgroup limits to a created or running
// container, adapted to the host like at creation. Settings the update
// leaves out keep their values, as in the cgroup. The resources now in
// force are recorded durably before it returns (the runtime spec in the
// bundle and status.json, which ContainerStatus and a restarted berthd
// read); if that fails, the cgroup is put back and the update fails.
func (m *Manager) UpdateResources(ctx context.Context, id string, r *runtimeapi.LinuxContainerResources) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	if r == nil {
		return nil
	}
	var adapted []string
	res, err := spec.Resources(r, m.cfg().Berth.Runtime.PidsLimit, m.host, &adapted)
	if err != nil {
		return err
	}
	m.logAdapted(adapted)
	if err := c.lockOp(ctx); err != nil {
		return err
	}
	defer c.op.Unlock()
	st := c.snapshot()
	if st.State != StateRunning && st.State != StateCreated {
		return fmt.Errorf("container %s is %s: %w", c.meta.ID, st.State, errdefs.ErrFailedPrecondition)
	}
	if err := m.checkMemoryDecrease(c, st, res); err != nil {
		return err
	}
	// The spec's resources are kept equal to what is in force.
	specData, s, err := readSpec(c.meta.Bundle)
	if err != nil {
		return fmt.Errorf("read spec of %s: %w", c.meta.ID, err)
	}
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
	before := s.Linux.Resources
	if err := m.oci(c.meta.Runtime).Update(ctx, c.meta.ID, res); err != nil {
		return fmt.Errorf("update resources of %s: %w", c.meta.ID, err)
	}
	s.Linux.Resources = spec.UpdatedResources(before, res)
	if err := m.recordResources(c, spec.UpdatedCRIResources(st.Resources, r, res), s, specData); err != nil {
		// Put the cgroup back even if the caller has gone.
		undo := spec.RestoreResources(before, res)
		if uerr := m.oci(c.meta.Runtime).Update(context.WithoutCancel(ctx), c.meta.ID, undo); uerr != nil {
			m.log.Error("restore resources after a failed update", "id", c.meta.ID, "error", uerr)
		}
		return fmt.Errorf("record the new resources: %w", err)
	}
	return nil
}

// checkMemoryDecrease refuses a memory limit below what the running
// container uses now (its working set, which the kernel cannot reclaim):
// cgroup v1 would refuse it with EBUSY after a reclaim, v2 would OOM-kill
// the container. The kubelet checks usage before a decrease itself and
// retries a refused resize later. A usage that cannot be read lets the
// update through.
func (m *Manager) checkMemoryDecrease(c *container, st Status, res *specs.LinuxResources) error {
	if st.State != StateRunning || res.Memory == nil || res.Memory.Limit == nil || m.usage == nil || c.meta.CgroupsPath == "" {
		return nil
	}
	u, err := m.usage.Read(cgroups.PathDir(c.meta.CgroupsPath))
	if err != nil {
		m.log.Debug("read memory usage before an update", "id", c.meta.ID, "error", err)
		return nil
	}
	if limit := *res.Memory.Limit; limit > 0 && uint64(limit) < u.WorkingSet {
		return fmt.Errorf("memory limit %d is below the container's current usage %d (working set): %w",
			limit, u.WorkingSet, errdefs.ErrInvalidArgument)
	}
	return nil
}

// recordResources writes the runtime spec with the resources now in
// force, then status.json with their CRI form, durably, then the
// status in memory. On error nothing changed: the spec is put back to
// oldSpec.
func (m *Manager) recordResources(c *container, cri *runtimeapi.LinuxContainerResources, s *specs.Spec, oldSpec []byte) error {
	path := filepath.Join(c.meta.Bundle, "config.json")
	data, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode spec: %w", err)
	}
	if err := store.WriteFileAtomic(path, data, 0o600); err != nil {
		return fmt.Errorf("write spec: %w", err)
	}
	// Held across the write and the change in memory, so that a
	// concurrent persist writes the new resources after this one.
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	st := c.snapshot()
	st.Version = recordVersion
	st.Resources = cri
	if err := m.records.Write(c.meta.ID, statusFile, &st); err != nil {
		if rerr := store.WriteFileAtomic(path, oldSpec, 0o600); rerr != nil {
			m.log.Error("put back the runtime spec after a failed update", "id", c.meta.ID, "error", rerr)
		}
		return err
	}
	c.mu.Lock()
	c.st.Resources = cloneResources(cri)
	c.mu.Unlock()
	return nil
}

// readSpec reads the OCI spec in a bundle, as bytes and decoded.
func readSpec(bundle string) ([]byte, *specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, nil, err
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, nil, fmt.Errorf("decode config.json: %w", err)
	}
	return data, &s, nil
}

// ReopenLog makes conmon reopen the container's log file, after the
// kubelet has rotated it away.
func (m *Manager) ReopenLog(ctx context.Context, id string) error {
	c, st, err := m.running(id)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, reopenTimeout)
	defer cancel()
	return runtime.ReopenLog(ctx, c.meta.Bundle, c.meta.LogPath, st.Conmon)
}
