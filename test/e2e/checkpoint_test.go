package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testutil"
)

// TestCheckpointRPCsNameMissingCRIU: the three checkpoint RPCs answer with
// what this node lacks (CRIU not installed, or `criu check` failing, as
// Debian's CRIU does on this kernel), not a generic error, and `berth
// info` reports the same finding.
func TestCheckpointRPCsNameMissingCRIU(t *testing.T) {
	d := testutil.StartDaemon(t, testutil.DaemonOptions{BinDir: binDir})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	_, lookErr := exec.LookPath("criu")
	criuWorks := lookErr == nil && exec.Command("criu", "check").Run() == nil
	wantCode, wantWords := codes.FailedPrecondition, "CRIU is not installed"
	switch {
	case criuWorks:
		wantCode, wantWords = codes.Unimplemented, "does not implement checkpoint/restore"
	case lookErr == nil:
		wantWords = "check` fails"
	}

	calls := map[string]func() error{
		"CheckpointContainer": func() error {
			_, err := d.Runtime.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: "abc", Location: "/tmp/x.tar"})
			return err
		},
		"CheckpointPod": func() error {
			_, err := d.Runtime.CheckpointPod(ctx, &runtimeapi.CheckpointPodRequest{PodSandboxId: "abc", OutputPath: "/tmp/x", ContainerIds: []string{"c"}})
			return err
		},
		"RestorePod": func() error {
			_, err := d.Runtime.RestorePod(ctx, &runtimeapi.RestorePodRequest{CheckpointPath: "/tmp/x"})
			return err
		},
	}
	for rpc, call := range calls {
		err := call()
		msg := status.Convert(err).Message()
		if status.Code(err) != wantCode || !strings.HasPrefix(msg, rpc+": ") || !strings.Contains(msg, wantWords) {
			t.Errorf("%s: want %v naming %q, got %v", rpc, wantCode, wantWords, err)
		}
	}
	if _, err := d.Runtime.CheckpointPod(ctx, &runtimeapi.CheckpointPodRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("CheckpointPod without a pod id: want InvalidArgument, got %v", err)
	}

	var info struct {
		Checkpoint struct {
			CRIU        bool   `json:"criu"`
			Reason      string `json:"reason"`
			Implemented bool   `json:"implemented"`
		} `json:"checkpoint"`
	}
	out := cli(t, d, "info", "-o", "json")
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("berth info -o json: %v\n%s", err, out)
	}
	if info.Checkpoint.CRIU != criuWorks || info.Checkpoint.Implemented || !strings.Contains(info.Checkpoint.Reason, wantWords) {
		t.Errorf("berth info checkpoint = %+v, want criu=%v and a reason with %q", info.Checkpoint, criuWorks, wantWords)
	}
}
