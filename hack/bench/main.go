// Command bench measures berth against its targets and prints a table:
// the whole container cycle (create, start, stop, remove), the whole pod
// cycle with the CNI bridge (run, stop, remove), both again with many pods
// already running (costs must stay flat), daemon start time and the
// daemon's peak memory. It runs the real berthd from bin/ in a scratch
// directory, with runc, conmon and the CNI plugins of the host.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/imagebuild"
)

const image = "localhost/berth-bench/busybox:latest"

type bench struct {
	dir    string
	bin    string
	daemon *exec.Cmd
	rt     runtimeapi.RuntimeServiceClient
	img    runtimeapi.ImageServiceClient
	start  time.Duration
}

func main() {
	n := flag.Int("n", 30, "iterations of each cycle")
	pods := flag.Int("pods", 100, "pods kept running for the flat-cost rows")
	bin := flag.String("bin", "bin", "directory holding berthd and berth")
	logLevel := flag.String("log-level", "warn", "berthd log level (debug logs every request with its duration)")
	keep := flag.Bool("keep", false, "keep the scratch directory (berthd.log) for inspection")
	flag.Parse()
	log.SetFlags(0)
	b, err := setUp(*bin, *logLevel)
	if err != nil {
		log.Fatal(err)
	}
	defer b.tearDown(*keep)

	ctx := context.Background()
	sandbox, err := b.runPod(ctx, "bench-base")
	if err != nil {
		log.Fatal(err)
	}
	rows := [][]string{{"daemon start to first answer", ms(b.start), "-", "small"}}
	ctr := b.measure(*n, func(i int) error { return b.containerCycle(ctx, sandbox, i) })
	pod := b.measure(*n, func(i int) error { return b.podCycle(ctx, fmt.Sprintf("cycle-%d", i), false) })
	podPID := b.measure(*n, func(i int) error { return b.podCycle(ctx, fmt.Sprintf("pid-%d", i), true) })
	rows = append(rows,
		[]string{"container cycle (create+start+stop+remove)", ms(ctr.median), ms(ctr.p90), "<= 70 ms"},
		[]string{"pod cycle (run+stop+remove, CNI bridge)", ms(pod.median), ms(pod.p90), "<= 100 ms"},
		[]string{"pod cycle, shared PID namespace (pause holder)", ms(podPID.median), ms(podPID.p90), "-"})

	for i := range *pods {
		if _, err := b.runPod(ctx, fmt.Sprintf("idle-%d", i)); err != nil {
			log.Fatalf("start idle pod %d: %v", i, err)
		}
	}
	ctrMany := b.measure(*n, func(i int) error { return b.containerCycle(ctx, sandbox, 1000+i) })
	podMany := b.measure(*n, func(i int) error { return b.podCycle(ctx, fmt.Sprintf("cycle2-%d", i), false) })
	list := b.measure(*n, func(int) error {
		_, err := b.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		return err
	})
	stats := b.measure(*n, func(int) error {
		_, err := b.rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
		return err
	})
	rows = append(rows,
		[]string{fmt.Sprintf("container cycle with %d pods running", *pods), ms(ctrMany.median), ms(ctrMany.p90), "flat"},
		[]string{fmt.Sprintf("pod cycle with %d pods running", *pods), ms(podMany.median), ms(podMany.p90), "flat"},
		[]string{fmt.Sprintf("ListPodSandbox of %d pods", *pods+1), ms(list.median), ms(list.p90), "-"},
		[]string{fmt.Sprintf("ListPodSandboxStats of %d pods", *pods+1), ms(stats.median), ms(stats.p90), "flat"},
		[]string{"daemon peak RSS (VmHWM)", peakRSS(b.daemon.Process.Pid), "-", "< 50 MB"})
	printTable([]string{"measure", "median", "p90", "target"}, rows)
}

func setUp(binDir, logLevel string) (*bench, error) {
	bin, err := filepath.Abs(binDir)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("/tmp", "berth-bench.")
	if err != nil {
		return nil, err
	}
	b := &bench{dir: dir, bin: bin}
	cfg := fmt.Sprintf(`[berth]
root = "%[1]s/storage"
runroot = "%[1]s/runroot"
state_dir = "%[1]s/state"
run_dir = "%[1]s/run"
log_dir = "%[1]s/logs"
[berth.api]
listen = "%[1]s/run/berth.sock"
[berth.runtime]
log_level = %[2]q
[berth.network]
network_dir = "%[1]s/cni"
`, dir, logLevel)
	cni := `{"cniVersion":"1.0.0","name":"berth-bench","plugins":[
 {"type":"bridge","bridge":"berthbench0","isGateway":true,"ipMasq":false,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"10.199.0.0/16"}]]}},
 {"type":"portmap","capabilities":{"portMappings":true}}]}`
	if err := os.MkdirAll(filepath.Join(dir, "cni"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "berth.toml"), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "cni", "10-bench.conflist"), []byte(cni), 0o644); err != nil {
		return nil, err
	}

	img, err := imagebuild.Busybox(imagebuild.Spec{})
	if err != nil {
		return nil, err
	}
	archive := filepath.Join(dir, "busybox.tar")
	if err := imagebuild.SaveDockerArchive(img, archive, image); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "berth.toml")
	if out, err := exec.Command(filepath.Join(bin, "berth"), "--config", conf, "image", "import", archive, "--name", image).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("import image: %v: %s", err, out)
	}

	b.daemon = exec.Command(filepath.Join(bin, "berthd"), "--config", conf, "--config-dir", filepath.Join(dir, "berth.toml.d"))
	b.daemon.Stderr, _ = os.Create(filepath.Join(dir, "berthd.log"))
	begin := time.Now()
	if err := b.daemon.Start(); err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "run", "berth.sock")
	// Wait for the socket with plain dials: a gRPC client that finds no
	// socket backs off for a second, which would be measured as start time.
	for time.Since(begin) < 20*time.Second {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		time.Sleep(time.Millisecond)
	}
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	b.rt, b.img = runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
	if _, err := b.rt.Version(context.Background(), &runtimeapi.VersionRequest{}, grpc.WaitForReady(true)); err == nil {
		b.start = time.Since(begin)
		return b, nil
	}
	return nil, fmt.Errorf("berthd did not answer within 20s; see %s/berthd.log", dir)
}

// podConfig is what the kubelet sends for an ordinary pod: each container
// in its own PID namespace (the pod shares net, IPC and UTS).
func (b *bench) podConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "bench", Uid: name},
		Hostname:     name,
		LogDirectory: filepath.Join(b.dir, "logs", name),
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
	}
}

func (b *bench) runPod(ctx context.Context, name string) (string, error) {
	return b.runPodConfig(ctx, b.podConfig(name))
}

func (b *bench) runPodConfig(ctx context.Context, pc *runtimeapi.PodSandboxConfig) (string, error) {
	r, err := b.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
	if err != nil {
		return "", err
	}
	return r.PodSandboxId, nil
}

// podCycle runs, stops and removes a pod; sharePID gives it one PID
// namespace for all its containers, which needs berth's pause holder.
func (b *bench) podCycle(ctx context.Context, name string, sharePID bool) error {
	pc := b.podConfig(name)
	if sharePID {
		pc.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	}
	id, err := b.runPodConfig(ctx, pc)
	if err != nil {
		return err
	}
	if _, err := b.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		return err
	}
	_, err = b.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
	return err
}

func (b *bench) containerCycle(ctx context.Context, pod string, i int) error {
	c, err := b.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId:  pod,
		SandboxConfig: b.podConfig("bench-base"),
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "c" + strconv.Itoa(i)},
			Image:    &runtimeapi.ImageSpec{Image: image},
			Command:  []string{"/bin/sleep", "3600"},
			LogPath:  fmt.Sprintf("c%d.log", i),
			Linux:    &runtimeapi.LinuxContainerConfig{},
		},
	})
	if err != nil {
		return err
	}
	if _, err := b.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		return err
	}
	if _, err := b.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: c.ContainerId, Timeout: 0}); err != nil {
		return err
	}
	_, err = b.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.ContainerId})
	return err
}

type result struct{ median, p90 time.Duration }

func (b *bench) measure(n int, f func(i int) error) result {
	times := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		if err := f(i); err != nil {
			log.Fatalf("iteration %d: %v (daemon log: %s/berthd.log)", i, err, b.dir)
		}
		times = append(times, time.Since(start))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	return result{median: times[n/2], p90: times[n*9/10]}
}

func (b *bench) tearDown(keep bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if pods, err := b.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err == nil {
		for _, p := range pods.Items {
			b.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id})
			b.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id})
		}
	}
	if b.daemon != nil && b.daemon.Process != nil {
		b.daemon.Process.Signal(syscall.SIGTERM)
		b.daemon.Wait()
	}
	// Storage leaves overlay mounts under the scratch dir; drop them first.
	exec.Command("sh", "-c", "grep -o ' "+b.dir+"[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l").Run()
	if keep {
		log.Printf("kept %s", b.dir)
		return
	}
	os.RemoveAll(b.dir)
}

func peakRSS(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.Atoi(strings.Fields(line)[1])
			return fmt.Sprintf("%.1f MB", float64(kb)/1024)
		}
	}
	return "?"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func printTable(header []string, rows [][]string) {
	widths := make([]int, len(header))
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	line := func(r []string) {
		for i, c := range r {
			fmt.Printf("| %-*s ", widths[i], c)
		}
		fmt.Println("|")
	}
	line(header)
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = strings.Repeat("-", widths[i])
	}
	line(sep)
	for _, r := range rows {
		line(r)
	}
}
