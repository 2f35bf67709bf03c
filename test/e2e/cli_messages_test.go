package e2e

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// cliMessage runs berth, wants it to fail with code and to print want,
// exactly, on stderr.
func cliMessage(t *testing.T, run func(string, ...string) (string, string, int), code int, want string, args ...string) {
	t.Helper()
	out, errOut, got := run("", args...)
	if got != code || errOut != want {
		t.Errorf("berth %s: exit %d, stderr %q; want exit %d, stderr %q (stdout %q)", strings.Join(args, " "), got, errOut, code, want, out)
	}
}

// gluedCodeWords are the gRPC code words that must not trail a message.
var gluedCodeWords = regexp.MustCompile(`: (invalid argument|failed precondition|already exists|unavailable|deadline exceeded)\n|\((invalid argument|failed precondition)\)`)

// What berth prints for the errors an operator meets most: one line, each
// thing said once, no gRPC code words, the next step where there is one.
func TestCLIErrorMessages(t *testing.T) {
	d, reg, ref := cliDaemon(t)
	run := func(stdin string, args ...string) (string, string, int) { return cliRun(t, d, stdin, args...) }

	cliMessage(t, run, 1, "berth: cannot connect to /nonexistent/berth.sock: is berthd running?\n",
		"--runtime-endpoint", "unix:///nonexistent/berth.sock", "version")
	cliMessage(t, run, 1, "berth: cannot connect to /nonexistent/berth.sock: is berthd running?\n",
		"--runtime-endpoint", "unix:///nonexistent/berth.sock", "ps")
	cliMessage(t, run, 1, `berth: image "UPPER/case" is not a valid image name: invalid reference format: repository name must be lowercase`+"\n",
		"pull", "UPPER/case")
	// The registry's own words follow; what berth says comes once.
	missing := reg.Ref("cli/busybox:nope")
	_, errOut, code := cliRun(t, d, "", "pull", missing)
	if code != 1 || !strings.HasPrefix(errOut, "berth: pull image "+missing+": ") || strings.Count(errOut, "pull image") != 1 ||
		!strings.HasSuffix(errOut, "manifest unknown\n") && !strings.HasSuffix(errOut, "Unknown manifest\n") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("pull of a missing tag: exit %d, stderr %q", code, errOut)
	}

	cli(t, d, "pull", ref)
	dir := t.TempDir()
	podFile := cliWrite(t, dir, "pod.yaml", cliPodYAML("msg", "cli", filepath.Join(dir, "logs")))
	absent := cliWrite(t, dir, "absent.yaml", cliCtrYAML("absent", "busybox:absent", "sleep 1"))
	pod := strings.TrimSpace(cli(t, d, "runp", podFile))
	cliMessage(t, run, 1, `berth: create container absent: image "busybox:absent" not found locally; pull it or use --with-pull`+"\n",
		"create", pod, absent, podFile)
	cliMessage(t, run, 1, `berth: create container absent: image "busybox:absent" not found locally; pull it or leave out --no-pull`+"\n",
		"run", "--no-pull", absent, cliWrite(t, dir, "run-pod.yaml", cliPodYAML("msg-run", "cli", filepath.Join(dir, "logs"))))

	// runc's create failure: the one line that says what failed.
	noexec := cliWrite(t, dir, "noexec.yaml", strings.Replace(cliCtrYAML("noexec", ref, "x"), "command: [/bin/sh, -c]", "command: [/nosuch]", 1))
	_, errOut, code = cliRun(t, d, "", "create", pod, noexec, podFile)
	if code != 1 || !strings.HasPrefix(errOut, "berth: create container noexec: runc create failed: ") ||
		!strings.HasSuffix(errOut, `exec: "/nosuch": stat /nosuch: no such file or directory`+"\n") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("create with a missing executable: exit %d, stderr %q", code, errOut)
	}

	ctrFile := cliWrite(t, dir, "ctr.yaml", cliCtrYAML("app", ref, "sleep 1000"))
	id := strings.TrimSpace(cli(t, d, "create", pod, ctrFile, podFile))
	cliMessage(t, run, 1, "berth: container "+id+" is created, not running\n", "exec", "-s", id, "true")
	cli(t, d, "start", id)
	cliMessage(t, run, 124, "berth: command timed out after 1s\n", "exec", "-s", "--timeout", "1", id, "sleep", "5")
	cliMessage(t, run, 124, "partial\nberth: command timed out after 2s\n", "exec", "-s", "--timeout", "2s", id, "sh", "-c", "printf partial >&2; sleep 5")
	cliMessage(t, run, 1, "berth: container "+id+" is running: stop it first or use --force\n", "rm", id)
	imageID, _ := cliImageNames(t, d)
	cliMessage(t, run, 1, "berth: remove image "+ref+" ("+imageID+"): the image is in use by container(s) ["+id+"]\n", "rmi", ref)
	cliMessage(t, run, 1, "berth: pod sandbox "+pod+" is ready: stop it first or use --force\n", "rmp", pod)

	for _, args := range [][]string{{"pull", "UPPER/case"}, {"exec", "-s", id[:12], "/nosuch"}, {"rmi", ref}, {"create", pod, noexec, podFile}} {
		if _, errOut, _ := cliRun(t, d, "", args...); gluedCodeWords.MatchString(errOut) {
			t.Errorf("berth %s: gRPC code words in %q", strings.Join(args, " "), errOut)
		}
	}
	cli(t, d, "stop", "-t", "0", id)
	cli(t, d, "rmp", "-f", pod)
}
