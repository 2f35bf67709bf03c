package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeCRI is an in-memory CRI runtime for the command tests: enough of
// the runtime and image services to drive every non-streaming command.
// Container logs are real files in the CRI format.
type fakeCRI struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	mu     sync.Mutex
	pods   map[string]*fakePod
	ctrs   map[string]*fakeCtr
	images map[string]*runtimeapi.Image
	events chan *runtimeapi.ContainerEventResponse
	now    int64
}

type fakePod struct {
	status *runtimeapi.PodSandboxStatus
	config *runtimeapi.PodSandboxConfig
}

type fakeCtr struct {
	status *runtimeapi.ContainerStatus
	config *runtimeapi.ContainerConfig
	podID  string
}

// startFake serves a fakeCRI on a unix socket and returns its endpoint.
func startFake(t *testing.T) (*fakeCRI, string) {
	t.Helper()
	f := &fakeCRI{pods: map[string]*fakePod{}, ctrs: map[string]*fakeCtr{}, images: map[string]*runtimeapi.Image{},
		events: make(chan *runtimeapi.ContainerEventResponse, 100), now: time.Now().Add(-time.Hour).UnixNano()}
	sock := filepath.Join(t.TempDir(), "cri.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(srv, f)
	runtimeapi.RegisterImageServiceServer(srv, f)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return f, "unix://" + sock
}

func newID() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (f *fakeCRI) tick() int64 {
	f.now += int64(time.Second)
	return f.now
}

func notFound(kind, id string) error {
	return status.Errorf(codes.NotFound, "%s %q not found", kind, id)
}

func (f *fakeCRI) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{Version: "0.1.0", RuntimeName: "fake", RuntimeVersion: "1", RuntimeApiVersion: "v1"}, nil
}

func (f *fakeCRI) RunPodSandbox(_ context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := newID()
	cfg := req.Config
	f.pods[id] = &fakePod{config: cfg, status: &runtimeapi.PodSandboxStatus{
		Id: id, Metadata: cfg.Metadata, State: runtimeapi.PodSandboxState_SANDBOX_READY, CreatedAt: f.tick(),
		Labels: cfg.Labels, Annotations: cfg.Annotations, RuntimeHandler: req.RuntimeHandler,
	}}
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

func (f *fakeCRI) ListPodSandbox(_ context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &runtimeapi.ListPodSandboxResponse{}
	for _, p := range f.pods {
		st := p.status
		if fl := req.Filter; fl != nil && ((fl.State != nil && fl.State.State != st.State) || !hasLabels(st.Labels, fl.LabelSelector)) {
			continue
		}
		resp.Items = append(resp.Items, &runtimeapi.PodSandbox{Id: st.Id, Metadata: st.Metadata, State: st.State,
			CreatedAt: st.CreatedAt, Labels: st.Labels, RuntimeHandler: st.RuntimeHandler})
	}
	return resp, nil
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func (f *fakeCRI) PodSandboxStatus(_ context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pods[req.PodSandboxId]
	if !ok {
		return nil, notFound("pod", req.PodSandboxId)
	}
	resp := &runtimeapi.PodSandboxStatusResponse{Status: p.status}
	if req.Verbose {
		cfg, _ := protojson.Marshal(p.config)
		resp.Info = map[string]string{"info": fmt.Sprintf(`{"pid": 1, "config": %s}`, cfg)}
	}
	return resp, nil
}

func (f *fakeCRI) StopPodSandbox(_ context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pods[req.PodSandboxId]
	if !ok {
		return nil, notFound("pod", req.PodSandboxId)
	}
	p.status.State = runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	for _, c := range f.ctrs {
		if c.podID == req.PodSandboxId {
			c.status.State = runtimeapi.ContainerState_CONTAINER_EXITED
		}
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

func (f *fakeCRI) RemovePodSandbox(_ context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pods, req.PodSandboxId)
	for id, c := range f.ctrs {
		if c.podID == req.PodSandboxId {
			delete(f.ctrs, id)
		}
	}
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

func (f *fakeCRI) CreateContainer(_ context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pods[req.PodSandboxId]
	if !ok {
		return nil, notFound("pod", req.PodSandboxId)
	}
	if _, ok := f.images[req.Config.Image.Image]; !ok {
		return nil, status.Errorf(codes.NotFound, "image %q not present", req.Config.Image.Image)
	}
	id, cfg := newID(), req.Config
	logPath := ""
	if p.config.LogDirectory != "" && cfg.LogPath != "" {
		logPath = filepath.Join(p.config.LogDirectory, cfg.LogPath)
		os.MkdirAll(filepath.Dir(logPath), 0o755)
		os.WriteFile(logPath, nil, 0o644)
	}
	f.ctrs[id] = &fakeCtr{podID: req.PodSandboxId, config: cfg, status: &runtimeapi.ContainerStatus{
		Id: id, Metadata: cfg.Metadata, State: runtimeapi.ContainerState_CONTAINER_CREATED, CreatedAt: f.tick(),
		Image: cfg.Image, ImageRef: f.images[cfg.Image.Image].Id, Labels: cfg.Labels, Annotations: cfg.Annotations, LogPath: logPath,
		Resources: &runtimeapi.ContainerResources{Linux: cfg.GetLinux().GetResources()},
	}}
	f.events <- &runtimeapi.ContainerEventResponse{ContainerId: id, ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, CreatedAt: f.now}
	return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
}

// get returns a container's record for a test to read.
func (f *fakeCRI) get(id string) (*fakeCtr, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.ctrs[id]
	return c, ok
}

func (f *fakeCRI) ctr(id string) (*fakeCtr, error) {
	c, ok := f.ctrs[id]
	if !ok {
		return nil, notFound("container", id)
	}
	return c, nil
}

func (f *fakeCRI) StartContainer(_ context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.ctr(req.ContainerId)
	if err != nil {
		return nil, err
	}
	if c.status.State != runtimeapi.ContainerState_CONTAINER_CREATED {
		return nil, status.Errorf(codes.FailedPrecondition, "container %s is not created", req.ContainerId)
	}
	c.status.State, c.status.StartedAt = runtimeapi.ContainerState_CONTAINER_RUNNING, f.tick()
	if c.status.LogPath != "" {
		ts := time.Unix(0, f.now).UTC().Format(time.RFC3339Nano)
		os.WriteFile(c.status.LogPath, []byte(ts+" stdout F started "+c.status.Metadata.Name+"\n"+ts+" stderr F warming up\n"), 0o644)
	}
	f.events <- &runtimeapi.ContainerEventResponse{ContainerId: req.ContainerId, ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, CreatedAt: f.now}
	return &runtimeapi.StartContainerResponse{}, nil
}

func (f *fakeCRI) StopContainer(_ context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.ctr(req.ContainerId)
	if err != nil {
		return nil, err
	}
	c.status.State, c.status.FinishedAt = runtimeapi.ContainerState_CONTAINER_EXITED, f.tick()
	return &runtimeapi.StopContainerResponse{}, nil
}

func (f *fakeCRI) RemoveContainer(_ context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.ctrs, req.ContainerId)
	return &runtimeapi.RemoveContainerResponse{}, nil
}

func (f *fakeCRI) ListContainers(_ context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &runtimeapi.ListContainersResponse{}
	for _, c := range f.ctrs {
		st := c.status
		if fl := req.Filter; fl != nil && ((fl.State != nil && fl.State.State != st.State) ||
			(fl.PodSandboxId != "" && fl.PodSandboxId != c.podID) || !hasLabels(st.Labels, fl.LabelSelector)) {
			continue
		}
		resp.Containers = append(resp.Containers, &runtimeapi.Container{Id: st.Id, PodSandboxId: c.podID, Metadata: st.Metadata,
			Image: st.Image, ImageRef: st.ImageRef, State: st.State, CreatedAt: st.CreatedAt, Labels: st.Labels})
	}
	return resp, nil
}

func (f *fakeCRI) ContainerStatus(_ context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.ctr(req.ContainerId)
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ContainerStatusResponse{Status: proto.Clone(c.status).(*runtimeapi.ContainerStatus)}
	if req.Verbose {
		cfg, _ := protojson.Marshal(c.config)
		resp.Info = map[string]string{"config": string(cfg), "pid": "42"}
	}
	return resp, nil
}

func (f *fakeCRI) UpdateContainerResources(_ context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.ctr(req.ContainerId)
	if err != nil {
		return nil, err
	}
	c.status.Resources = &runtimeapi.ContainerResources{Linux: req.Linux}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}

// ExecSync runs nothing: "exit N" exits N, anything else is echoed.
func (f *fakeCRI) ExecSync(_ context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	line := strings.Join(req.Cmd, " ")
	var code int32
	if _, err := fmt.Sscanf(line, "exit %d", &code); err == nil {
		return &runtimeapi.ExecSyncResponse{Stderr: []byte("exiting\n"), ExitCode: code}, nil
	}
	return &runtimeapi.ExecSyncResponse{Stdout: []byte(line + "\n")}, nil
}

func (f *fakeCRI) ListContainerStats(_ context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &runtimeapi.ListContainerStatsResponse{}
	for _, c := range f.ctrs {
		if fl := req.Filter; fl != nil && fl.PodSandboxId != "" && fl.PodSandboxId != c.podID {
			continue
		}
		resp.Stats = append(resp.Stats, &runtimeapi.ContainerStats{
			Attributes:    &runtimeapi.ContainerAttributes{Id: c.status.Id, Metadata: c.status.Metadata},
			Cpu:           &runtimeapi.CpuUsage{Timestamp: f.now, UsageNanoCores: &runtimeapi.UInt64Value{Value: 125_000_000}},
			Memory:        &runtimeapi.MemoryUsage{WorkingSetBytes: &runtimeapi.UInt64Value{Value: 2_500_000}},
			WritableLayer: &runtimeapi.FilesystemUsage{UsedBytes: &runtimeapi.UInt64Value{Value: 4096}, InodesUsed: &runtimeapi.UInt64Value{Value: 3}},
		})
	}
	return resp, nil
}

func (f *fakeCRI) GetContainerEvents(_ *runtimeapi.GetEventsRequest, srv runtimeapi.RuntimeService_GetContainerEventsServer) error {
	for {
		select {
		case <-srv.Context().Done():
			return nil
		case ev := <-f.events:
			if err := srv.Send(ev); err != nil {
				return err
			}
		}
	}
}

func (f *fakeCRI) PullImage(_ context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if strings.Contains(req.Image.Image, "denied") {
		return nil, status.Errorf(codes.PermissionDenied, "pull %s: access denied", req.Image.Image)
	}
	id := "sha256:" + newID()
	f.images[req.Image.Image] = &runtimeapi.Image{Id: id, RepoTags: []string{req.Image.Image}, Size: 1_000_000}
	return &runtimeapi.PullImageResponse{ImageRef: id}, nil
}

func (f *fakeCRI) ImageStatus(_ context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for name, img := range f.images {
		if name == req.Image.Image || img.Id == req.Image.Image {
			return &runtimeapi.ImageStatusResponse{Image: img}, nil
		}
	}
	return &runtimeapi.ImageStatusResponse{}, nil
}

func (f *fakeCRI) ListImages(context.Context, *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &runtimeapi.ListImagesResponse{}
	for _, img := range f.images {
		resp.Images = append(resp.Images, img)
	}
	return resp, nil
}

func (f *fakeCRI) RemoveImage(_ context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for name, img := range f.images {
		if img.Id == req.Image.Image {
			delete(f.images, name)
		}
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}
