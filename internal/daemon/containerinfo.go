package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/metrics"
	"github.com/berth-cri/berth/internal/pod"
)

// containerStatuser is the container manager's verbose status, whose
// "info" document carries sandboxID, pid and runtimeSpec.
type containerStatuser interface {
	Status(ctx context.Context, id string, verbose bool) (*runtimeapi.ContainerStatus, map[string]string, error)
}

// podGetter finds a pod, for its IPs.
type podGetter interface {
	Get(idOrPrefix string) (*pod.Sandbox, error)
}

// containerInfo answers the info socket's /containers/{id} from the
// container manager's verbose status and the pod's IPs.
type containerInfo struct {
	ctrs containerStatuser
	pods podGetter
}

var _ metrics.ContainerInfoSource = containerInfo{}

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

func (c containerInfo) ContainerInfo(id string) (*metrics.ContainerInfo, error) {
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
	ci := &metrics.ContainerInfo{
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
