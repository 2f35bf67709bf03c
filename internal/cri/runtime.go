package cri

import (
	"context"
	"encoding/json"
	"slices"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/checkpoint"
	"github.com/berth-cri/berth/internal/runtime"
)

// RuntimeName is what Version reports as the runtime's name.
const RuntimeName = "berth"

// Version answers with berth's name and version and the CRI version.
func (s *runtimeService) Version(_ context.Context, _ *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{
		Version:           "0.1.0",
		RuntimeName:       RuntimeName,
		RuntimeVersion:    s.deps.Version,
		RuntimeApiVersion: "v1",
	}, nil
}

// Status reports RuntimeReady and NetworkReady, the runtime handlers, and
// with verbose the effective config.
func (s *runtimeService) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	network := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: true}
	if s.deps.NetworkStatus != nil {
		ready, reason, msg := s.deps.NetworkStatus()
		network.Status, network.Reason, network.Message = ready, reason, msg
	} else {
		network.Status, network.Reason, network.Message = false, "NetworkPluginNotReady", "no network manager is configured"
	}
	resp := &runtimeapi.StatusResponse{
		Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
			{Type: runtimeapi.RuntimeReady, Status: true},
			network,
		}},
		RuntimeHandlers: s.handlers(ctx),
		Features:        &runtimeapi.RuntimeFeatures{SupplementalGroupsPolicy: true},
	}
	if req.GetVerbose() {
		cfg, err := json.Marshal(s.deps.Config())
		if err != nil {
			return nil, toStatus(err)
		}
		resp.Info = map[string]string{"config": string(cfg), "version": s.deps.Version}
		if s.deps.Checkpoint != nil {
			// Only verbose asks: the first one runs `criu check`.
			ckpt, err := json.Marshal(checkpointInfo{Support: s.deps.Checkpoint.Support(), Implemented: checkpoint.Implemented})
			if err != nil {
				return nil, toStatus(err)
			}
			resp.Info["checkpoint"] = string(ckpt)
		}
		if err := addExtensionsInfo(resp.Info, s.deps.Extensions); err != nil {
			return nil, toStatus(err)
		}
	}
	return resp, nil
}

// checkpointInfo is the "checkpoint" entry of the verbose status.
type checkpointInfo struct {
	checkpoint.Support
	// Implemented says whether berth itself can checkpoint.
	Implemented bool `json:"implemented"`
}

// handlers lists the configured runtime handlers with what each can do;
// the default one is also reported under the empty name, as the kubelet
// expects.
func (s *runtimeService) handlers(ctx context.Context) []*runtimeapi.RuntimeHandler {
	rt := s.deps.Config().Berth.Runtime
	names := make([]string, 0, len(rt.Runtimes))
	for n := range rt.Runtimes {
		names = append(names, n)
	}
	slices.Sort(names)
	features := func(name string) *runtimeapi.RuntimeHandlerFeatures {
		cfg := s.deps.Config()
		_, h, err := cfg.Handler(name)
		if s.deps.Features == nil || err != nil {
			return &runtimeapi.RuntimeHandlerFeatures{}
		}
		f := s.deps.Features.Of(ctx, runtime.ForHandler(cfg, h))
		return &runtimeapi.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: f.RecursiveReadOnly}
	}
	out := []*runtimeapi.RuntimeHandler{{Name: "", Features: features("")}}
	for _, n := range names {
		out = append(out, &runtimeapi.RuntimeHandler{Name: n, Features: features(n)})
	}
	return out
}

// RuntimeConfig tells the kubelet which cgroup driver berth uses.
func (s *runtimeService) RuntimeConfig(_ context.Context, _ *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	driver := runtimeapi.CgroupDriver_CGROUPFS
	if s.deps.Config().Berth.Runtime.CgroupManager == "systemd" {
		driver = runtimeapi.CgroupDriver_SYSTEMD
	}
	return &runtimeapi.RuntimeConfigResponse{Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: driver}}, nil
}
