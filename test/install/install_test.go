// Package install tests berth's installation as a node component: `make
// install` into a staging root, and the .deb of `make deb` unpacked into a
// scratch root (this machine has no systemd to start the unit, so the
// unit is checked key by key). Neither needs root nor starts berthd.
package install

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// repo is the module root, two levels up from this package.
func repo(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// runIn runs a command in dir with extra environment and returns its
// standard output; a failure fails the test with all its output.
func runIn(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// makeTarget runs `make target vars...` in the repo with binaries built
// into a directory of the test.
func makeTarget(t *testing.T, bin string, target string, vars ...string) string {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	return runIn(t, repo(t), nil, "make", append([]string{"-s", target, "BIN=" + bin}, vars...)...)
}

// files lists the regular files under root, relative to it.
func files(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, "/"+rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// unitKeys reads a systemd unit into key -> values, by section.
func unitKeys(t *testing.T, p string) map[string][]string {
	t.Helper()
	keys := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(read(t, p)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, _ := strings.Cut(line, "=")
			keys[section+"."+k] = append(keys[section+"."+k], v)
		}
	}
	return keys
}

// checkUnit asserts what makes the unit right for a CRI runtime: started
// by systemd's notify protocol, only berthd killed on stop (containers
// survive), ordered before the kubelet, running the installed berthd.
func checkUnit(t *testing.T, p, berthd string) {
	t.Helper()
	keys := unitKeys(t, p)
	for key, want := range map[string]string{
		"Service.Type":         "notify",
		"Service.NotifyAccess": "main",
		"Service.KillMode":     "process",
		"Service.ExecReload":   "/bin/kill -s HUP $MAINPID",
		"Service.Restart":      "on-failure",
		"Unit.Before":          "kubelet.service",
		"Install.WantedBy":     "multi-user.target",
		"Service.ExecStart":    berthd + " $BERTH_OPTIONS",
	} {
		if got := keys[key]; len(got) != 1 || got[0] != want {
			t.Errorf("unit %s: %s = %q, want %q", p, key, got, want)
		}
	}
}

// TestMakeInstallIntoDestDir installs into a staging root: binaries under
// PREFIX, the unit running PREFIX's berthd (not the staging path), the
// default config, and the node-wide files where the root has none; a
// second install keeps what is there.
func TestMakeInstallIntoDestDir(t *testing.T) {
	bin, dest := t.TempDir(), t.TempDir()
	makeTarget(t, bin, "install", "DESTDIR="+dest, "PREFIX=/usr/local")

	want := []string{
		"/etc/berth/berth.toml",
		"/etc/cni/net.d/10-berth-bridge.conflist",
		"/etc/containers/policy.json",
		"/usr/local/bin/berth",
		"/usr/local/bin/berth-pause",
		"/usr/local/bin/berthd",
		"/usr/local/lib/systemd/system/berth.service",
		"/usr/local/share/berth/10-berth-bridge.conflist",
		"/usr/local/share/berth/policy.json",
	}
	if got := files(t, dest); !slices.Equal(got, want) {
		t.Fatalf("installed files:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, b := range []string{"berthd", "berth", "berth-pause"} {
		if st, err := os.Stat(filepath.Join(dest, "usr/local/bin", b)); err != nil || st.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v, mode %v", b, err, st.Mode())
		}
	}
	checkUnit(t, filepath.Join(dest, "usr/local/lib/systemd/system/berth.service"), "/usr/local/bin/berthd")

	// The config is berthd's built-in one, and berthd loads it.
	cfg := filepath.Join(dest, "etc/berth/berth.toml")
	defaults := runIn(t, bin, nil, "./berthd", "--config", "/dev/null", "--config-dir", "/nonexistent", "config")
	if got := read(t, cfg); got != defaults {
		t.Errorf("installed berth.toml is not `berthd config`:\n%s", got)
	}
	runIn(t, bin, nil, "./berthd", "--config", cfg, "--config-dir", "/nonexistent", "config")
	for file, src := range map[string]string{
		"etc/cni/net.d/10-berth-bridge.conflist": "contrib/cni/10-berth-bridge.conflist",
		"etc/containers/policy.json":             "contrib/containers/policy.json",
	} {
		if read(t, filepath.Join(dest, file)) != read(t, filepath.Join(repo(t), src)) {
			t.Errorf("%s differs from %s", file, src)
		}
	}

	// Again, on a node whose admin changed the config, has another CNI
	// network and its own policy: all three are kept.
	edited := "# edited by the admin\n" + defaults
	for file, content := range map[string]string{
		"etc/berth/berth.toml":        edited,
		"etc/containers/policy.json":  `{"default": [{"type": "reject"}]}`,
		"etc/cni/net.d/05-other.conf": `{"cniVersion": "1.0.0", "name": "other", "type": "bridge"}`,
	} {
		if err := os.WriteFile(filepath.Join(dest, file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(dest, "etc/cni/net.d/10-berth-bridge.conflist")); err != nil {
		t.Fatal(err)
	}
	makeTarget(t, bin, "install", "DESTDIR="+dest, "PREFIX=/usr/local")
	if read(t, cfg) != edited || read(t, filepath.Join(dest, "etc/containers/policy.json")) != `{"default": [{"type": "reject"}]}` {
		t.Error("a second install replaced the admin's berth.toml or policy.json")
	}
	if _, err := os.Stat(filepath.Join(dest, "etc/cni/net.d/10-berth-bridge.conflist")); err == nil {
		t.Error("berth's CNI network was added beside the node's own")
	}
}

// TestDebPackage builds the .deb and checks its control data, unpacks it
// into a scratch root and checks the files and the unit, then runs its
// postinst against that root (dpkg's DPKG_ROOT) to place the node-wide
// files, and again to see it keep the node's own.
func TestDebPackage(t *testing.T) {
	for _, tool := range []string{"dpkg-deb", "dpkg"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	bin := t.TempDir()
	out := makeTarget(t, bin, "deb")
	lines := strings.Fields(out)
	deb := lines[len(lines)-1]
	if !strings.HasSuffix(deb, ".deb") {
		t.Fatalf("make deb printed %q, want the package's path last", out)
	}

	field := func(name string) string {
		return strings.TrimSpace(runIn(t, "", nil, "dpkg-deb", "--field", deb, name))
	}
	if field("Package") != "berth" {
		t.Errorf("Package: %q", field("Package"))
	}
	var depends []string
	for _, d := range strings.Split(field("Depends"), ",") {
		name, _, _ := strings.Cut(strings.TrimSpace(d), " ")
		depends = append(depends, name)
	}
	for _, want := range []string{"runc", "conmon", "containernetworking-plugins", "libc6"} {
		if !slices.Contains(depends, want) {
			t.Errorf("Depends %v lacks %s", depends, want)
		}
	}
	info := runIn(t, "", nil, "dpkg-deb", "--info", deb)
	for _, script := range []string{"postinst", "prerm", "postrm", "conffiles"} {
		if !strings.Contains(info, " "+script+" ") {
			t.Errorf("control archive lacks %s:\n%s", script, info)
		}
	}
	ctrl := t.TempDir()
	runIn(t, "", nil, "dpkg-deb", "--control", deb, ctrl)
	if got := strings.Fields(read(t, filepath.Join(ctrl, "conffiles"))); !slices.Equal(got, []string{"/etc/berth/berth.toml"}) {
		t.Errorf("conffiles %v, want /etc/berth/berth.toml", got)
	}

	root := t.TempDir()
	runIn(t, "", nil, "dpkg", "-x", deb, root)
	want := []string{
		"/etc/berth/berth.toml",
		"/usr/bin/berth",
		"/usr/bin/berth-pause",
		"/usr/bin/berthd",
		"/usr/lib/systemd/system/berth.service",
		"/usr/share/berth/10-berth-bridge.conflist",
		"/usr/share/berth/policy.json",
	}
	if got := files(t, root); !slices.Equal(got, want) {
		t.Fatalf("package files:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	checkUnit(t, filepath.Join(root, "usr/lib/systemd/system/berth.service"), "/usr/bin/berthd")
	// The packaged berthd runs and loads the packaged config.
	runIn(t, root, nil, "./usr/bin/berthd", "--config", "etc/berth/berth.toml", "--config-dir", "/nonexistent", "config")

	postinst := filepath.Join(ctrl, "postinst")
	runIn(t, "", []string{"DPKG_ROOT=" + root}, postinst, "configure")
	for file, src := range map[string]string{
		"etc/cni/net.d/10-berth-bridge.conflist": "contrib/cni/10-berth-bridge.conflist",
		"etc/containers/policy.json":             "contrib/containers/policy.json",
	} {
		if read(t, filepath.Join(root, file)) != read(t, filepath.Join(repo(t), src)) {
			t.Errorf("postinst: %s is not %s", file, src)
		}
	}
	// A node with its own network and policy keeps them.
	other := t.TempDir()
	runIn(t, "", nil, "dpkg", "-x", deb, other)
	for file, content := range map[string]string{
		"etc/cni/net.d/05-other.conflist": `{"cniVersion": "1.0.0", "name": "other", "plugins": []}`,
		"etc/containers/policy.json":      `{"default": [{"type": "reject"}]}`,
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(other, file)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(other, file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	runIn(t, "", []string{"DPKG_ROOT=" + other}, postinst, "configure")
	if _, err := os.Stat(filepath.Join(other, "etc/cni/net.d/10-berth-bridge.conflist")); err == nil {
		t.Error("postinst added berth's CNI network beside the node's own")
	}
	if read(t, filepath.Join(other, "etc/containers/policy.json")) != `{"default": [{"type": "reject"}]}` {
		t.Error("postinst replaced the node's policy.json")
	}
}
