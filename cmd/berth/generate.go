package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"sigs.k8s.io/yaml"
)

// generateCommand groups generate kube and generate systemd.
func generateCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Generate Kubernetes YAML from pods, or a systemd unit for berthd",
		Example: `  berth generate kube web > web.yaml
  berth generate systemd > /etc/systemd/system/berth.service`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(generateKubeCommand(g), generateSystemdCommand(g))
	return cmd
}

func generateKubeCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "kube POD [POD...]",
		Short: "Print a Kubernetes Pod reconstructed from a pod sandbox",
		Long: `Print a Kubernetes Pod (YAML) reconstructed from a CRI pod sandbox and its
containers: image, command, args, working dir, env, ports, labels,
annotations, resources, security context and host-path volumes, in a form
kubectl create -f accepts. The kubelet's own labels, annotations and mounts
are left out. Several pods are printed as several YAML documents.`,
		Example: `  berth generate kube web
  berth generate kube 3f2a > pod.yaml && kubectl create -f pod.yaml`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(func(c *client) error {
				for i, ref := range args {
					src, err := c.kubeSource(ref)
					if err != nil {
						return err
					}
					if i > 0 {
						fmt.Fprintln(cmd.OutOrStdout(), "---")
					}
					if err := writeKubeYAML(cmd.OutOrStdout(), src.pod.Id, kubePod(src)); err != nil {
						return err
					}
				}
				return nil
			})
		},
		ValidArgsFunction: completePods(g),
	}
}

// kubeSource gathers a pod, its containers and, from the verbose info,
// their CRI configs.
func (c *client) kubeSource(ref string) (kubeSource, error) {
	ps, err := c.podStatus(ref)
	if err != nil {
		return kubeSource{}, err
	}
	src := kubeSource{pod: ps.Status}
	pc := &runtimeapi.PodSandboxConfig{}
	if configFromInfo(ps.Info, pc) {
		src.podConfig = pc
	} else {
		src.podConfig = podConfigFromBerthInfo(ps.Info["info"])
	}
	ctx, cancel := c.ctx()
	defer cancel()
	list, err := c.listContainersRPC(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: src.pod.Id}})
	if err != nil {
		return kubeSource{}, fmt.Errorf("list containers of %s: %w", ref, err)
	}
	var caps []string
	for _, ctr := range list.Containers {
		cs, err := c.runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctr.Id, Verbose: true})
		if err != nil {
			return kubeSource{}, fmt.Errorf("container status of %s: %w", ctr.Id, err)
		}
		kc := kubeContainer{status: cs.Status}
		cc := &runtimeapi.ContainerConfig{}
		if configFromInfo(cs.Info, cc) {
			kc.config = cc
		} else {
			if caps == nil {
				caps = c.defaultCaps()
			}
			kc.config = containerConfigFromSpec(cs.Info, caps)
		}
		src.containers = append(src.containers, kc)
	}
	return src, nil
}

// configFromInfo finds the CRI config a runtime keeps in its verbose info:
// under "config" (berth), or as "config" inside the JSON object "info"
// (containerd, CRI-O). It reports whether one was found.
func configFromInfo(info map[string]string, m proto.Message) bool {
	try := func(raw []byte) bool {
		if len(raw) == 0 || string(raw) == "null" {
			return false
		}
		proto.Reset(m)
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, m); err != nil {
			return false
		}
		md := m.ProtoReflect().Descriptor().Fields().ByName("metadata")
		return md != nil && m.ProtoReflect().Has(md)
	}
	if try([]byte(info["config"])) {
		return true
	}
	for _, k := range slices.Sorted(maps.Keys(info)) {
		var obj map[string]json.RawMessage
		if json.Unmarshal([]byte(info[k]), &obj) == nil && try(obj["config"]) {
			return true
		}
	}
	return false
}

// podConfigFromBerthInfo rebuilds the parts of a PodSandboxConfig that
// berthd's verbose pod info (its pod record) holds; nil when it is not
// that.
func podConfigFromBerthInfo(raw string) *runtimeapi.PodSandboxConfig {
	var rec struct {
		Metadata struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
			UID       string `json:"uid"`
			Attempt   uint32 `json:"attempt"`
		} `json:"metadata"`
		Labels       map[string]string `json:"labels"`
		Annotations  map[string]string `json:"annotations"`
		Hostname     string            `json:"hostname"`
		PortMappings []struct {
			HostPort      int32  `json:"hostPort"`
			ContainerPort int32  `json:"containerPort"`
			Protocol      string `json:"protocol"`
			HostIP        string `json:"hostIP"`
		} `json:"port_mappings"`
		Sysctls map[string]string     `json:"sysctls"`
		DNS     *runtimeapi.DNSConfig `json:"dns"`
	}
	if raw == "" || json.Unmarshal([]byte(raw), &rec) != nil || rec.Metadata.Name == "" {
		return nil
	}
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: rec.Metadata.Name, Namespace: rec.Metadata.Namespace, Uid: rec.Metadata.UID, Attempt: rec.Metadata.Attempt},
		Hostname: rec.Hostname, Labels: rec.Labels, Annotations: rec.Annotations, DnsConfig: rec.DNS,
		Linux: &runtimeapi.LinuxPodSandboxConfig{Sysctls: rec.Sysctls},
	}
	for _, pm := range rec.PortMappings {
		proto := runtimeapi.Protocol_value[strings.ToUpper(pm.Protocol)]
		cfg.PortMappings = append(cfg.PortMappings, &runtimeapi.PortMapping{
			Protocol: runtimeapi.Protocol(proto), ContainerPort: pm.ContainerPort, HostPort: pm.HostPort, HostIp: pm.HostIP,
		})
	}
	return cfg
}

// writeKubeYAML writes a pod as YAML without the empty fields (status,
// creationTimestamp, {} structs) that would only be noise.
func writeKubeYAML(w io.Writer, podID string, pod *corev1.Pod) error {
	js, err := json.Marshal(pod)
	if err != nil {
		return fmt.Errorf("encode pod: %w", err)
	}
	var doc any
	if err := json.Unmarshal(js, &doc); err != nil {
		return fmt.Errorf("encode pod: %w", err)
	}
	out, err := yaml.Marshal(prune(doc))
	if err != nil {
		return fmt.Errorf("encode pod: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s%s", kubeYAMLHeader(podID), out)
	return err
}

// prune drops nulls and empty objects, recursively.
func prune(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			p := prune(e)
			if m, ok := p.(map[string]any); p == nil || (ok && len(m) == 0) {
				delete(t, k)
				continue
			}
			t[k] = p
		}
		return t
	case []any:
		for i := range t {
			t[i] = prune(t[i])
		}
		return t
	}
	return v
}

// systemdOptions shape the berthd unit.
type systemdOptions struct {
	berthd, envFile string
}

func generateSystemdCommand(g *globals) *cobra.Command {
	o := &systemdOptions{}
	cmd := &cobra.Command{
		Use:   "systemd",
		Short: "Print a systemd unit that runs berthd",
		Long: `Print a systemd service unit for berthd, modelled on CRI-O's crio.service:
started before the kubelet, reloaded with SIGHUP, restarted on failure, with
no task or file limits and protected from the OOM killer. The unit is
Type=notify: berthd tells systemd it is ready (sd_notify READY=1) once it
has recovered its pods and containers and its CRI socket answers, so units
ordered after it (the kubelet) start against a working runtime; a start
that takes longer than TimeoutStartSec (5 minutes, room for the storage
check after a crash) fails. Only berthd's own process is killed on stop or
restart (KillMode=process): conmon and the containers keep running, and
berthd picks them up again when it starts. berthd's options go in
BERTH_OPTIONS in the environment file; --config (-c) given to berth is
passed on to berthd.`,
		Example: `  berth generate systemd > /etc/systemd/system/berth.service
  systemctl daemon-reload && systemctl enable --now berth
  berth generate systemd --berthd /usr/bin/berthd -c /etc/berth/berth.toml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.berthd == "" {
				o.berthd = defaultBerthdPath()
			}
			if !filepath.IsAbs(o.berthd) {
				return fmt.Errorf("--berthd %q: want an absolute path", o.berthd)
			}
			cfg := ""
			if g.flags.Changed("config") {
				cfg = g.config
			}
			_, err := io.WriteString(cmd.OutOrStdout(), systemdUnit(o, cfg))
			return err
		},
	}
	cmd.Flags().StringVar(&o.berthd, "berthd", "", "path of berthd (default: beside berth, else /usr/local/bin/berthd)")
	cmd.Flags().StringVar(&o.envFile, "env-file", "/etc/default/berth", "optional environment file with BERTH_OPTIONS")
	// The unit is always Type=notify now; the flag stays for old scripts.
	cmd.Flags().Bool("notify", true, "")
	_ = cmd.Flags().MarkDeprecated("notify", "the unit is always Type=notify")
	return cmd
}

// defaultBerthdPath is the berthd installed beside this berth, else the
// usual place.
func defaultBerthdPath() string {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "berthd")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			if abs, err := filepath.Abs(p); err == nil {
				return abs
			}
		}
	}
	return "/usr/local/bin/berthd"
}

// systemdUnit renders the unit file.
func systemdUnit(o *systemdOptions, config string) string {
	exec := o.berthd
	if config != "" {
		exec += " --config " + config
	}
	return strings.Join([]string{
		"# berth.service: generated by berth generate systemd",
		"[Unit]",
		"Description=berth: a Kubernetes container runtime (CRI)",
		"Documentation=https://github.com/berth-cri/berth",
		"Wants=network-online.target",
		"Before=kubelet.service",
		"After=network-online.target",
		"",
		"[Service]",
		"Type=notify",
		"NotifyAccess=main",
		"EnvironmentFile=-" + o.envFile,
		"Environment=GOTRACEBACK=crash",
		"ExecStart=" + exec + " $BERTH_OPTIONS",
		"ExecReload=/bin/kill -s HUP $MAINPID",
		"KillMode=process",
		"TasksMax=infinity",
		"LimitNOFILE=1048576",
		"LimitNPROC=1048576",
		"LimitCORE=infinity",
		"OOMScoreAdjust=-999",
		"TimeoutStartSec=5min",
		"Restart=on-failure",
		"RestartSec=10",
		"",
		"[Install]",
		"WantedBy=multi-user.target",
		"Alias=berthd.service",
		"",
	}, "\n")
}
