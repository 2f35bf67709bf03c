package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestEveryCommandHasHelp walks the tree: every command has a short help
// and an example, and its flags merge with the global ones (a clash of
// shorthands would panic here rather than in an operator's hands).
func TestEveryCommandHasHelp(t *testing.T) {
	root := newRoot(&globals{})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Name() == "help" {
			return
		}
		_ = c.InheritedFlags()
		_ = c.LocalFlags()
		if c.Short == "" {
			t.Errorf("%s: no short help", c.CommandPath())
		}
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%s: no example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	for _, want := range []string{"version", "info", "pods", "ps", "images", "inspect", "inspectp", "inspecti", "pull", "rmi",
		"imagefsinfo", "runp", "create", "start", "stop", "rm", "stopp", "rmp", "run", "logs", "exec", "attach", "port-forward",
		"stats", "statsp", "events", "update", "config", "generate", "completion", "image"} {
		if c, _, err := root.Find([]string{want}); err != nil || c.Name() != want {
			t.Errorf("no %s command", want)
		}
	}
	if c, _, err := root.Find([]string{"image", "copy"}); err != nil || c.Name() != "copy" {
		t.Error("no image copy command")
	}
}

func TestCompletionScripts(t *testing.T) {
	for _, shell := range []string{"bash", "zsh"} {
		root := newRoot(&globals{})
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs([]string{"completion", shell})
		if err := root.Execute(); err != nil {
			t.Fatalf("%s: %v", shell, err)
		}
		if !strings.Contains(out.String(), "berth") || out.Len() < 1000 {
			t.Errorf("%s script looks wrong:\n%.300s", shell, out.String())
		}
	}
}

func TestClientConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "crictl.yaml")
	if err := os.WriteFile(path, []byte("runtime-endpoint: unix:///file.sock\ntimeout: 7\npull-image-on-create: true\nother-key: kept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CRI_CONFIG_FILE", path)
	t.Setenv("CONTAINER_RUNTIME_ENDPOINT", "")
	t.Setenv("IMAGE_SERVICE_ENDPOINT", "")
	parse := func(args ...string) settings {
		t.Helper()
		g := &globals{}
		root := newRoot(g)
		if err := root.PersistentFlags().Parse(args); err != nil {
			t.Fatal(err)
		}
		s, err := g.settings()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := parse()
	if s.runtimeEndpoint != "unix:///file.sock" || s.imageEndpoint != "unix:///file.sock" || s.timeout != 7*time.Second || !s.pullImageOnCreate {
		t.Errorf("from file: %+v", s)
	}
	t.Setenv("CONTAINER_RUNTIME_ENDPOINT", "unix:///env.sock")
	if s := parse(); s.runtimeEndpoint != "unix:///env.sock" {
		t.Errorf("env should beat the file: %+v", s)
	}
	if s := parse("--runtime-endpoint", "/flag.sock", "--timeout", "3s", "--image-endpoint", "/img.sock"); s.runtimeEndpoint != "/flag.sock" || s.timeout != 3*time.Second || s.imageEndpoint != "/img.sock" {
		t.Errorf("flags should beat everything: %+v", s)
	}

	// config --set keeps unknown keys and types the values.
	if err := writeClientConfig(path, []string{"timeout=9", "debug=true", "image-endpoint=unix:///i.sock"}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	for _, want := range []string{"timeout: 9\n", "debug: true\n", "other-key: kept\n", "image-endpoint: unix:///i.sock\n"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("config file lacks %q:\n%s", want, data)
		}
	}
	for _, bad := range []string{"nokey=1", "timeout=soon", "debug=maybe", "novalue"} {
		if err := writeClientConfig(path, []string{bad}); err == nil {
			t.Errorf("--set %s accepted", bad)
		}
	}
}

func TestLoadConfigFiles(t *testing.T) {
	dir := t.TempDir()
	pod := filepath.Join(dir, "pod.yaml")
	ctr := filepath.Join(dir, "ctr.json")
	os.WriteFile(pod, []byte("metadata:\n  name: web\n  namespace: default\n  uid: u1\nlog_directory: /tmp/logs\nport_mappings:\n- container_port: 80\n  host_port: 8080\nlinux: {}\n"), 0o644)
	os.WriteFile(ctr, []byte(`{"metadata": {"name": "app"}, "image": {"image": "busybox"}, "command": ["sleep", "9"],
	  "envs": [{"key": "A", "value": "plain text"}, {"key": "N", "value": 5}], "log_path": "app.log"}`), 0o644)
	p, err := loadPodConfig(pod)
	if err != nil || p.Metadata.Name != "web" || p.LogDirectory != "/tmp/logs" || p.PortMappings[0].HostPort != 8080 {
		t.Fatalf("pod: %v %v", p, err)
	}
	c, err := loadContainerConfig(ctr)
	if err != nil || c.Command[1] != "9" || string(c.Envs[0].Value) != "plain text" || string(c.Envs[1].Value) != "5" || c.LogPath != "app.log" {
		t.Fatalf("container: %v %v", c, err)
	}
	os.WriteFile(pod, []byte("metadata: {name: web}\nbogus_field: 1\n"), 0o644)
	if _, err := loadPodConfig(pod); err == nil || !strings.Contains(err.Error(), "bogus_field") {
		t.Errorf("unknown field: %v", err)
	}
	os.WriteFile(ctr, []byte(`{"metadata": {"name": "app"}}`), 0o644)
	if _, err := loadContainerConfig(ctr); err == nil {
		t.Error("container without image accepted")
	}
}

func TestUpdateOverlay(t *testing.T) {
	r := &resourceFlags{}
	cmd := &cobra.Command{}
	r.register(cmd.Flags())
	if err := cmd.ParseFlags([]string{"--memory", "256Mi", "--cpu-quota", "5000"}); err != nil {
		t.Fatal(err)
	}
	cur := &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 20000, CpuShares: 512, MemoryLimitInBytes: 1 << 20}
	got, err := r.apply(cmd, cur)
	if err != nil {
		t.Fatal(err)
	}
	if got.MemoryLimitInBytes != 256<<20 || got.CpuQuota != 5000 || got.CpuPeriod != 100000 || got.CpuShares != 512 {
		t.Errorf("overlay: %v", got)
	}
	if cur.CpuQuota != 20000 {
		t.Error("apply changed the current resources")
	}
	cmd = &cobra.Command{}
	r.register(cmd.Flags())
	if _, err := r.apply(cmd, cur); err == nil {
		t.Error("no flag given, yet no error")
	}
	cmd = &cobra.Command{}
	r.register(cmd.Flags())
	_ = cmd.ParseFlags([]string{"--memory", "lots"})
	if _, err := r.apply(cmd, nil); err == nil {
		t.Error("bad size accepted")
	}
}
