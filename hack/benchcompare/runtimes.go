package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// runtimeKind says how to lay out and start one CRI runtime.
type runtimeKind struct {
	name string
	// helper is the comm of the per-container or per-pod helper process.
	helper string
	// bin is the daemon binary; path prepends the directory holding
	// its shim, if any.
	bin, path string
	config    func(dir string, env *environment) (args []string, err error)
}

// environment is what every runtime shares: the registry, the CNI
// network, runc.
type environment struct {
	images  *images
	runc    string
	cniBin  string
	subnet  string
	bridge  string
	binDir  string // berth's bin/
	logDebg bool
}

// daemon is one started runtime and its CRI clients.
type daemon struct {
	kind   runtimeKind
	dir    string
	socket string
	cmd    *exec.Cmd
	conn   *grpc.ClientConn
	rt     runtimeapi.RuntimeServiceClient
	img    runtimeapi.ImageServiceClient
}

// conflist is bridge + host-local + portmap, as berth's e2e tests use,
// with per-runtime IPAM state.
func (e *environment) conflist(dataDir string) string {
	return fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "benchcompare", "plugins": [
 {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
  "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
 {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}]}`, e.bridge, dataDir, e.subnet)
}

func berthKind(env *environment) runtimeKind {
	return runtimeKind{name: "berth", helper: "conmon", bin: filepath.Join(env.binDir, "berthd"),
		config: func(dir string, env *environment) ([]string, error) {
			level := "info"
			if env.logDebg {
				level = "debug"
			}
			p := func(s string) string { return fmt.Sprintf("%q", filepath.Join(dir, s)) }
			cfg := fmt.Sprintf(`[berth]
root = %s
runroot = %s
state_dir = %s
run_dir = %s
log_dir = %s
[berth.api]
listen = %q
[berth.runtime]
log_level = %q
[berth.runtime.runtimes.runc]
runtime_path = %q
runtime_root = %s
runtime_type = "oci"
[berth.image]
signature_policy = %s
registries_conf = %s
registries_conf_dir = %s
[berth.network]
network_dir = %s
plugin_dirs = [%q]
`, p("storage"), p("runroot"), p("state"), p("run"), p("logs"), filepath.Join(dir, "berth.sock"), level,
				env.runc, p("runc"), p("policy.json"), p("registries.conf"), p("registries.conf.d"), p("cni"), env.cniBin)
			files := map[string]string{
				"berth.toml":      cfg,
				"policy.json":     `{"default": [{"type": "insecureAcceptAnything"}]}`,
				"registries.conf": fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", env.images.host),
			}
			if err := writeFiles(dir, files); err != nil {
				return nil, err
			}
			return []string{"--config", filepath.Join(dir, "berth.toml"), "--config-dir", filepath.Join(dir, "berth.toml.d")}, nil
		}}
}

// containerdKind starts containerd (1.6 config version 2, or 2.x config
// version 3) with its CRI plugin on a private root and sockets. Its
// sandboxes ask for oom_score_adj -998, which a machine that is itself a
// container may refuse (runc then fails in nsexec): restrict_oom_score_adj
// keeps them at or above containerd's own.
func containerdKind(name, bin, shimDir string, v2 bool) runtimeKind {
	return runtimeKind{name: name, helper: "containerd-shim", bin: bin, path: shimDir,
		config: func(dir string, env *environment) ([]string, error) {
			level := "info"
			if env.logDebg {
				level = "debug"
			}
			hosts := fmt.Sprintf("server = \"http://%[1]s\"\n[host.\"http://%[1]s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", env.images.host)
			common := fmt.Sprintf(`root = %q
state = %q
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  level = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), filepath.Join(dir, "containerd.sock"),
				filepath.Join(dir, "containerd.sock.ttrpc"), level)
			var cfg string
			if v2 {
				cfg = "version = 3\n" + common + fmt.Sprintf(`[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = %[1]q
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = %[2]q
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = %[3]q
  [plugins.'io.containerd.cri.v1.runtime']
    restrict_oom_score_adj = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = %[4]q
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = [%[5]q]
      conf_dir = %[6]q
`, filepath.Join(dir, "opt"), env.images.pause, filepath.Join(dir, "certs.d"), env.runc, env.cniBin, filepath.Join(dir, "cni"))
			} else {
				cfg = "version = 2\n" + common + fmt.Sprintf(`[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = %[1]q
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = %[2]q
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = %[3]q
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = %[4]q
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = %[5]q
      conf_dir = %[6]q
`, filepath.Join(dir, "opt"), env.images.pause, filepath.Join(dir, "certs.d"), env.runc, env.cniBin, filepath.Join(dir, "cni"))
			}
			files := map[string]string{
				"config.toml": cfg,
				filepath.Join("certs.d", env.images.host, "hosts.toml"): hosts,
			}
			if err := writeFiles(dir, files); err != nil {
				return nil, err
			}
			return []string{"--config", filepath.Join(dir, "config.toml")}, nil
		}}
}

func writeFiles(dir string, files map[string]string) error {
	for rel, content := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// start lays out a fresh directory and starts the daemon in it.
func (k runtimeKind) start(env *environment) (*daemon, error) {
	dir, err := os.MkdirTemp("/tmp", "benchcompare-"+k.name+".")
	if err != nil {
		return nil, err
	}
	d := &daemon{kind: k, dir: dir}
	args, err := k.config(dir, env)
	if err != nil {
		return d, err
	}
	if err := writeFiles(dir, map[string]string{"cni/10-bench.conflist": env.conflist(filepath.Join(dir, "ipam"))}); err != nil {
		return d, err
	}
	d.socket = filepath.Join(dir, "containerd.sock")
	if k.name == "berth" {
		d.socket = filepath.Join(dir, "berth.sock")
	}
	d.cmd = exec.Command(k.bin, args...)
	d.cmd.Env = os.Environ()
	if k.path != "" {
		d.cmd.Env = append(d.cmd.Env, "PATH="+k.path+":"+os.Getenv("PATH"))
	}
	logFile, err := os.Create(filepath.Join(dir, "daemon.log"))
	if err != nil {
		return d, err
	}
	d.cmd.Stdout, d.cmd.Stderr = logFile, logFile
	if err := d.cmd.Start(); err != nil {
		return d, err
	}
	begin := time.Now()
	for {
		if c, err := net.Dial("unix", d.socket); err == nil {
			c.Close()
			break
		}
		if time.Since(begin) > 30*time.Second {
			return d, fmt.Errorf("%s did not listen within 30s; see %s/daemon.log", k.name, dir)
		}
		time.Sleep(5 * time.Millisecond)
	}
	d.conn, err = grpc.NewClient("unix://"+d.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return d, err
	}
	d.rt, d.img = runtimeapi.NewRuntimeServiceClient(d.conn), runtimeapi.NewImageServiceClient(d.conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		// containerd's CRI plugin answers Status before its network is
		// ready; wait until it says NetworkReady.
		st, err := d.rt.Status(ctx, &runtimeapi.StatusRequest{}, grpc.WaitForReady(true))
		if err == nil && ready(st) {
			return d, nil
		}
		if ctx.Err() != nil {
			return d, fmt.Errorf("%s not ready: %v; see %s/daemon.log", k.name, err, dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ready is RuntimeReady and NetworkReady; other conditions (containerd
// 2 reports deprecation warnings as one) do not matter here.
func ready(st *runtimeapi.StatusResponse) bool {
	ok := 0
	for _, c := range st.GetStatus().GetConditions() {
		if (c.Type == runtimeapi.RuntimeReady || c.Type == runtimeapi.NetworkReady) && c.Status {
			ok++
		}
	}
	return ok == 2
}

// stop removes every pod, stops the daemon and its helpers, and deletes
// its directory and the bridge.
func (d *daemon) stop(env *environment, keep bool) {
	if d.rt != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		removeAllPods(ctx, d.rt)
		cancel()
	}
	if d.conn != nil {
		d.conn.Close()
	}
	if d.cmd != nil && d.cmd.Process != nil {
		d.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			d.cmd.Process.Kill()
			<-done
		}
	}
	// Helpers (shims) outlive containerd by design; none may outlive the run.
	for _, pid := range helperPIDs(d.kind.helper, d.dir) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	exec.Command("sh", "-c", "grep -o ' "+d.dir+"[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l").Run()
	exec.Command("ip", "link", "del", env.bridge).Run()
	if keep {
		fmt.Fprintf(os.Stderr, "kept %s\n", d.dir)
		return
	}
	os.RemoveAll(d.dir)
}

func removeAllPods(ctx context.Context, rt runtimeapi.RuntimeServiceClient) {
	pods, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return
	}
	ids := make([]string, 0, len(pods.Items))
	for _, p := range pods.Items {
		ids = append(ids, p.Id)
	}
	removePods(ctx, rt, ids)
}

// removePods kills the pods' containers (sleep as PID 1 ignores SIGTERM,
// so a graceful stop would wait out the grace period), then stops and
// removes the pods, four at a time.
func removePods(ctx context.Context, rt runtimeapi.RuntimeServiceClient, ids []string) {
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, id := range ids {
		if id == "" {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctrs, _ := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{
				Filter: &runtimeapi.ContainerFilter{PodSandboxId: id}})
			for _, c := range ctrs.GetContainers() {
				rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: c.Id, Timeout: 0})
			}
			rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
			rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
		})
	}
	wg.Wait()
}

// helperPIDs are the processes named helper whose command line mentions
// dir (conmon's bundle paths, the shim's -address).
func helperPIDs(helper, dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || !strings.HasPrefix(strings.TrimSpace(string(comm)), helper) {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(cmdline), dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}
