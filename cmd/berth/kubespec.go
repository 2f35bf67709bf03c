package main

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ociSpec is the part of an OCI runtime spec generate kube reads.
type ociSpec struct {
	Process *struct {
		Terminal bool     `json:"terminal"`
		Args     []string `json:"args"`
		Env      []string `json:"env"`
		Cwd      string   `json:"cwd"`
		User     struct {
			UID uint32 `json:"uid"`
			GID uint32 `json:"gid"`
		} `json:"user"`
		Capabilities *struct {
			Bounding []string `json:"bounding"`
		} `json:"capabilities"`
		NoNewPrivileges bool `json:"noNewPrivileges"`
	} `json:"process"`
	Root *struct {
		Readonly bool `json:"readonly"`
	} `json:"root"`
	Linux *struct {
		Resources *struct {
			Memory *struct {
				Limit *int64 `json:"limit"`
			} `json:"memory"`
			CPU *struct {
				Shares *uint64 `json:"shares"`
				Quota  *int64  `json:"quota"`
				Period *uint64 `json:"period"`
			} `json:"cpu"`
		} `json:"resources"`
	} `json:"linux"`
}

// runtimeEnv are variables a runtime sets itself, not the pod's author.
func runtimeEnv(name string) bool { return name == "HOSTNAME" }

// containerConfigFromSpec rebuilds a ContainerConfig from the OCI runtime
// spec in a container's verbose info ("runtimeSpec" or "spec", at the top
// or inside "info"), for runtimes (berthd among them) that keep no CRI
// config there; nil when there is none. The command becomes the whole
// argv (entrypoint and arguments can no longer be told apart) and the env
// includes the image's; capabilities are told relative to defaultCaps.
func containerConfigFromSpec(info map[string]string, defaultCaps []string) *runtimeapi.ContainerConfig {
	var found *ociSpec
	for _, k := range slices.Sorted(maps.Keys(info)) {
		var obj map[string]json.RawMessage
		if json.Unmarshal([]byte(info[k]), &obj) != nil {
			continue
		}
		if k == "runtimeSpec" || k == "spec" {
			obj = map[string]json.RawMessage{k: json.RawMessage(info[k])}
		}
		for _, name := range []string{"runtimeSpec", "spec"} {
			var s ociSpec
			if raw, ok := obj[name]; ok && json.Unmarshal(raw, &s) == nil && s.Process != nil {
				found = &s
			}
		}
	}
	if found == nil {
		return nil
	}
	p := found.Process
	cfg := &runtimeapi.ContainerConfig{Command: p.Args, WorkingDir: p.Cwd, Tty: p.Terminal}
	for _, e := range p.Env {
		k, v, _ := strings.Cut(e, "=")
		if !runtimeEnv(k) {
			cfg.Envs = append(cfg.Envs, &runtimeapi.KeyValue{Key: k, Value: []byte(v)})
		}
	}
	sc := &runtimeapi.LinuxContainerSecurityContext{NoNewPrivs: p.NoNewPrivileges}
	if p.User.UID != 0 {
		sc.RunAsUser = &runtimeapi.Int64Value{Value: int64(p.User.UID)}
	}
	if p.User.GID != 0 {
		sc.RunAsGroup = &runtimeapi.Int64Value{Value: int64(p.User.GID)}
	}
	if found.Root != nil {
		sc.ReadonlyRootfs = found.Root.Readonly
	}
	if p.Capabilities != nil {
		if len(p.Capabilities.Bounding) > 30 {
			sc.Privileged = true
		} else {
			sc.Capabilities = capabilityDiff(p.Capabilities.Bounding, defaultCaps)
		}
	}
	cfg.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: sc, Resources: specResources(found)}
	return cfg
}

// capabilityDiff tells a bounding set as additions to and drops from the
// runtime's defaults.
func capabilityDiff(bounding, defaults []string) *runtimeapi.Capability {
	norm := func(c string) string { return strings.TrimPrefix(strings.ToUpper(c), "CAP_") }
	have, def := map[string]bool{}, map[string]bool{}
	for _, c := range bounding {
		have[norm(c)] = true
	}
	for _, c := range defaults {
		def[norm(c)] = true
	}
	out := &runtimeapi.Capability{}
	for _, c := range slices.Sorted(maps.Keys(have)) {
		if !def[c] {
			out.AddCapabilities = append(out.AddCapabilities, c)
		}
	}
	for _, c := range slices.Sorted(maps.Keys(def)) {
		if !have[c] {
			out.DropCapabilities = append(out.DropCapabilities, c)
		}
	}
	if len(out.AddCapabilities)+len(out.DropCapabilities) == 0 {
		return nil
	}
	return out
}

func specResources(s *ociSpec) *runtimeapi.LinuxContainerResources {
	if s.Linux == nil || s.Linux.Resources == nil {
		return nil
	}
	r, out := s.Linux.Resources, &runtimeapi.LinuxContainerResources{}
	if r.Memory != nil && r.Memory.Limit != nil && *r.Memory.Limit > 0 {
		out.MemoryLimitInBytes = *r.Memory.Limit
	}
	if c := r.CPU; c != nil {
		if c.Shares != nil {
			out.CpuShares = int64(*c.Shares)
		}
		if c.Quota != nil {
			out.CpuQuota = *c.Quota
		}
		if c.Period != nil {
			out.CpuPeriod = int64(*c.Period)
		}
	}
	return out
}

// criODefaultCaps are CRI-O's default capabilities, berthd's too.
func criODefaultCaps() []string {
	return []string{"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "SETGID", "SETUID", "SETPCAP", "NET_BIND_SERVICE", "KILL"}
}

// defaultCaps are the runtime's default capabilities, read from berthd's
// config in the verbose runtime status, else CRI-O's.
func (c *client) defaultCaps() []string {
	ctx, cancel := c.ctx()
	defer cancel()
	st, err := c.runtime.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		return criODefaultCaps()
	}
	var cfg struct {
		Berth struct {
			Runtime struct {
				DefaultCaps []string `json:"default_capabilities"`
			} `json:"runtime"`
		} `json:"berth"`
	}
	if json.Unmarshal([]byte(st.Info["config"]), &cfg) != nil || len(cfg.Berth.Runtime.DefaultCaps) == 0 {
		return criODefaultCaps()
	}
	return cfg.Berth.Runtime.DefaultCaps
}
