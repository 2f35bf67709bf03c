package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/pod"
)

// ContainerStatuser is the container manager's verbose status, whose
// "info" document carries sandboxID, pid and runtimeSpec.
type ContainerStatuser interface {
	Status(ctx context.Context, id string, verbose bool) (*runtimeapi.ContainerStatus, map[string]string, error)
}

// PodGetter finds a pod, for its IPs.
type PodGetter interface {
	Get(idOrPrefix string) (*pod.Sandbox, error)
}

// Containers answers /containers/{id} from the container manager's
// verbose status and the pod's IPs.
func Containers(ctrs ContainerStatuser, pods PodGetter) ContainerInfoSource {
	return containerInfo{ctrs: ctrs, pods: pods}
}

type containerInfo struct {
	ctrs ContainerStatuser
	pods PodGetter
}

// verboseInfo is the part of ContainerStatus's "info" document used here.
type verboseInfo struct {
	SandboxID   string `json:"sandboxID"`
	Pid         int    `json:"pid"`
	Bundle      string `json:"bundle"`
	RuntimeSpec struct {
		Root struct {
			Path string `json:"path"`
		} `json:"root"`
	} `json:"runtimeSpec"`
}

func (c containerInfo) ContainerInfo(id string) (*ContainerInfo, error) {
	st, extra, err := c.ctrs.Status(context.Background(), id, true)
	if err != nil {
		return nil, err
	}
	var vi verboseInfo
	if doc := extra["info"]; doc != "" {
		if err := json.Unmarshal([]byte(doc), &vi); err != nil {
			return nil, fmt.Errorf("container %s: verbose status: %w", st.GetId(), err)
		}
	}
	root := vi.RuntimeSpec.Root.Path
	if root != "" && !filepath.IsAbs(root) && vi.Bundle != "" {
		root = filepath.Join(vi.Bundle, root) // relative to the bundle, as OCI says
	}
	ci := &ContainerInfo{
		ID:          st.GetId(),
		Name:        st.GetMetadata().GetName(),
		Pid:         vi.Pid,
		Image:       st.GetImage().GetImage(),
		ImageRef:    st.GetImageRef(),
		CreatedTime: st.GetCreatedAt(),
		Labels:      st.GetLabels(),
		Annotations: st.GetAnnotations(),
		LogPath:     st.GetLogPath(),
		Root:        root,
		Sandbox:     vi.SandboxID,
		IPs:         []string{},
	}
	if vi.SandboxID != "" && c.pods != nil {
		if sb, err := c.pods.Get(vi.SandboxID); err == nil && sb != nil {
			ci.IPs = append(ci.IPs, sb.IPs...)
		}
	}
	return ci, nil
}
