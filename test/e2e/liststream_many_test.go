package e2e

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/container"
)

// TestStreamListsFiveThousandContainers: a node with 5,000 containers
// answers a unary ListContainers bigger than gRPC's default 4 MiB
// message limit, so a client with that default gets ResourceExhausted,
// while StreamContainers gives the same client every container, and
// `berth ps -a` lists them all.
//
// Running 5,000 containers would take far too long here, so berthd is
// stopped and the records of 5,000 exited containers of a real pod are
// written into its state dir with container.SeedExited (berth's own
// record types and store), then berthd starts and loads them as it
// loads the containers it ran. What this proves is the listing, not the
// container lifecycle. Each carries a 1 KiB annotation, as the kubelet's
// containers carry several.
func TestStreamListsFiveThousandContainers(t *testing.T) {
	const n = 5000
	e := startCtrEnv(t)
	img, err := e.d.Images.ImageStatus(ctxT(t, 10*time.Second), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: e.ref}})
	if err != nil {
		t.Fatal(err)
	}
	e.d.Stop(t)
	now := time.Now()
	pad := strings.Repeat("p", 1024)
	metas := make([]*container.Meta, n)
	seeded := map[string]bool{}
	for i := range metas {
		id := fmt.Sprintf("%x", sha256.Sum256(fmt.Appendf(nil, "seeded-%d", i)))
		seeded[id] = true
		name := fmt.Sprintf("seeded-%d", i)
		metas[i] = &container.Meta{
			ID: id, Name: fmt.Sprintf("k8s_%s_ctr_e2e_uid-ctr_0", name), PodID: e.pod, CtrName: name,
			Image:       container.ImageRef{Image: e.ref, ID: img.GetImage().GetId()},
			Labels:      map[string]string{"seeded": "yes"},
			Annotations: map[string]string{"io.berth.e2e/padding": pad},
			LogPath:     filepath.Join(e.logDir, name+".log"), CreatedAt: now.Add(time.Duration(i)), StopSignal: "SIGTERM",
		}
	}
	start := time.Now()
	if err := container.SeedExited(filepath.Join(e.d.Dir, "state"), metas, 0, now); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d container records written in %v", n, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	e.d.Start(t)
	t.Logf("berthd started with them in %v", time.Since(start).Round(time.Millisecond))
	// Removing 5,000 containers through CRI would dominate the test: the
	// seeded records go with berthd stopped, before the pod's cleanup.
	t.Cleanup(func() {
		e.d.Stop(t)
		for id := range seeded {
			os.RemoveAll(filepath.Join(e.d.Dir, "state", "containers", id))
		}
		e.d.Start(t)
	})

	// A client with gRPC's default limits, as crictl or an old kubelet.
	conn, err := grpc.NewClient("unix://"+e.d.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	_, err = rt.ListContainers(ctxT(t, time.Minute), &runtimeapi.ListContainersRequest{})
	expectCode(t, err, codes.ResourceExhausted)

	items := collectStream(t, "StreamContainers", func() (grpc.ServerStreamingClient[runtimeapi.StreamContainersResponse], error) {
		return rt.StreamContainers(ctxT(t, time.Minute), &runtimeapi.StreamContainersRequest{})
	}, (*runtimeapi.StreamContainersResponse).GetContainers)
	got := map[string]int{}
	for _, c := range items {
		got[c.GetId()]++
	}
	for id := range seeded {
		if got[id] != 1 {
			t.Fatalf("StreamContainers gave seeded container %s %d times (%d items in all)", id, got[id], len(items))
		}
	}
	if len(items) != n {
		t.Errorf("StreamContainers: %d items, want the %d seeded", len(items), n)
	}

	out, err := e.d.CLI(t, "ps", "-a", "-q")
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Fields(out); len(lines) != n {
		t.Errorf("berth ps -a -q: %d ids, want %d", len(lines), n)
	}
}
