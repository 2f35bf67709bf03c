package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// chaosCtr is what the ledger knows of one container a client made.
type chaosCtr struct {
	pod string
	// oomable containers run oomScript under a small memory limit.
	oomable bool
	started bool
	// stopping: the client asked to stop it; after that its state is
	// the client's business.
	stopping bool
	// oomed: the driver made it allocate without bound; conmonKilled:
	// the driver killed its conmon.
	oomed, conmonKilled bool
}

// chaosLedger records every answer the clients got: the objects they
// were told exist, and those they removed.
type chaosLedger struct {
	mu          sync.Mutex
	pods        map[string]bool // id -> removed
	ctrs        map[string]*chaosCtr
	removedCtrs map[string]bool
	// requests and failures count CRI calls; failures are answers other
	// than success and Unavailable/cancelled (the daemon was down) that
	// the client did not expect.
	requests, failures, retries atomic.Int64
	failureLog                  []string
}

func newChaosLedger() *chaosLedger {
	return &chaosLedger{pods: map[string]bool{}, ctrs: map[string]*chaosCtr{}, removedCtrs: map[string]bool{}}
}

func (l *chaosLedger) fail(format string, args ...any) {
	l.failures.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failureLog) < 20 {
		l.failureLog = append(l.failureLog, fmt.Sprintf(format, args...))
	}
}

// oomScript waits for /tmp/oom, then becomes a process allocating
// without bound, which the container's memory limit OOM-kills.
const oomScript = `while [ ! -f /tmp/oom ]; do sleep 0.1; done; exec awk 'BEGIN { s = "x"; while (1) s = s s }'`

// chaosClient churns pods and containers the way a kubelet would: every
// step is retried until it succeeds (berthd may be down), and a retried
// create gives the object the lost answer named.
type chaosClient struct {
	id     int
	e      *recEnv
	ledger *chaosLedger
	rt     runtimeapi.RuntimeServiceClient
	conn   *grpc.ClientConn
}

func newChaosClient(id int, e *recEnv, l *chaosLedger) (*chaosClient, error) {
	conn, err := grpc.NewClient("unix://"+e.d.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	return &chaosClient{id: id, e: e, ledger: l, rt: runtimeapi.NewRuntimeServiceClient(conn), conn: conn}, nil
}

// transient reports an error a retry may cure: berthd down or
// restarting, or a request cut off by its own deadline.
func transient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return errors.Is(err, context.DeadlineExceeded)
}

// call makes one CRI call with a per-request deadline, retrying
// transient errors until ctx ends. ok decides which other errors are
// answers the step accepts (nil: none).
func (c *chaosClient) call(ctx context.Context, what string, ok func(error) bool, fn func(context.Context) error) error {
	for {
		c.ledger.requests.Add(1)
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := fn(rctx)
		cancel()
		switch {
		case err == nil:
			return nil
		case ok != nil && ok(err):
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case transient(err):
			c.ledger.retries.Add(1)
			time.Sleep(200 * time.Millisecond)
		default:
			c.ledger.fail("client %d %s: %v", c.id, what, err)
			return err
		}
	}
}

// run loops cycles until ctx ends. A cycle left half-done when ctx ends
// stays as it is: the test checks that what it was told exists exists.
func (c *chaosClient) run(ctx context.Context) {
	defer c.conn.Close()
	for n := 0; ctx.Err() == nil; n++ {
		if err := c.cycle(ctx, n); err != nil && ctx.Err() == nil {
			time.Sleep(time.Second)
		}
	}
}

func (c *chaosClient) cycle(ctx context.Context, n int) error {
	l := c.ledger
	name := fmt.Sprintf("chaos-%d-%d", c.id, n)
	pc := podConfig(name)
	pc.LogDirectory = filepath.Join(c.e.d.Dir, "podlogs", name)
	var pod string
	if err := c.call(ctx, "RunPodSandbox "+name, nil, func(ctx context.Context) error {
		r, err := c.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
		pod = r.GetPodSandboxId()
		return err
	}); err != nil {
		return err
	}
	l.mu.Lock()
	l.pods[pod] = false
	l.mu.Unlock()

	oomable := rand.IntN(3) == 0
	cfg := c.e.config("c", "sleep", "3600")
	if oomable {
		cfg = c.e.config("c", "sh", "-c", oomScript)
		cfg.Linux = &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 32 << 20}}
	}
	var ctr string
	if err := c.call(ctx, "CreateContainer "+name, nil, func(ctx context.Context) error {
		r, err := c.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: pc})
		ctr = r.GetContainerId()
		return err
	}); err != nil {
		return err
	}
	l.mu.Lock()
	l.ctrs[ctr] = &chaosCtr{pod: pod, oomable: oomable}
	l.mu.Unlock()
	// A start whose answer was lost is refused when retried: the
	// container has started.
	alreadyStarted := func(err error) bool {
		st, serr := c.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctr})
		return status.Code(err) == codes.FailedPrecondition && serr == nil &&
			st.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_CREATED
	}
	if err := c.call(ctx, "StartContainer "+name, alreadyStarted, func(ctx context.Context) error {
		_, err := c.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr})
		return err
	}); err != nil {
		return err
	}
	l.mu.Lock()
	l.ctrs[ctr].started = true
	l.mu.Unlock()

	// An exec, best effort: the container may have been OOM-killed or
	// lost its conmon meanwhile.
	l.requests.Add(1)
	ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, _ = c.rt.ExecSync(ectx, &runtimeapi.ExecSyncRequest{ContainerId: ctr, Cmd: []string{"true"}, Timeout: 5})
	cancel()
	// Live a while, so the driver finds running containers.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Duration(1+rand.IntN(8)) * time.Second):
	}

	l.mu.Lock()
	l.ctrs[ctr].stopping = true
	l.mu.Unlock()
	steps := []struct {
		what string
		fn   func(context.Context) error
	}{
		{"StopContainer", func(ctx context.Context) error {
			_, err := c.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctr, Timeout: 2})
			return err
		}},
		{"RemoveContainer", func(ctx context.Context) error {
			_, err := c.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctr})
			return err
		}},
		{"StopPodSandbox", func(ctx context.Context) error {
			_, err := c.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod})
			return err
		}},
		{"RemovePodSandbox", func(ctx context.Context) error {
			_, err := c.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod})
			return err
		}},
	}
	for i, s := range steps {
		if err := c.call(ctx, s.what+" "+name, nil, s.fn); err != nil {
			return err
		}
		l.mu.Lock()
		switch i {
		case 1:
			l.removedCtrs[ctr] = true
		case 3:
			l.pods[pod] = true
		}
		l.mu.Unlock()
	}
	return nil
}
