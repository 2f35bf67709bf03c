package daemon

import (
	"context"
	"errors"
	"fmt"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/pod"
)

type fakeStatuser struct{}

func (fakeStatuser) Status(_ context.Context, id string, verbose bool) (*runtimeapi.ContainerStatus, map[string]string, error) {
	if id != "abc" {
		return nil, nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	st := &runtimeapi.ContainerStatus{Id: "abcdef", Metadata: &runtimeapi.ContainerMetadata{Name: "web"},
		Image: &runtimeapi.ImageSpec{Image: "busybox"}, ImageRef: "sha256:1", LogPath: "/logs/web.log", CreatedAt: 7}
	return st, map[string]string{"info": `{"sandboxID":"pod1","pid":42,"bundle":"/run/b","runtimeSpec":{"root":{"path":"rootfs"}}}`}, nil
}

type fakePods struct{}

func (fakePods) Get(id string) (*pod.Sandbox, error) {
	return &pod.Sandbox{ID: id, IPs: []string{"10.0.0.2", "fd00::2"}}, nil
}

func TestContainersAdapter(t *testing.T) {
	src := containerInfo{ctrs: fakeStatuser{}, pods: fakePods{}}
	ci, err := src.ContainerInfo("abc")
	if err != nil {
		t.Fatal(err)
	}
	if ci.ID != "abcdef" || ci.Name != "web" || ci.Pid != 42 || ci.Sandbox != "pod1" || ci.Root != "/run/b/rootfs" ||
		ci.LogPath != "/logs/web.log" || ci.Image != "busybox" || ci.ImageRef != "sha256:1" || len(ci.IPs) != 2 || ci.CreatedTime != 7 {
		t.Fatalf("%+v", ci)
	}
	if _, err := src.ContainerInfo("nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
}
