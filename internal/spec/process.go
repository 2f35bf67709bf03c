package spec

import (
	"fmt"
	"path"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// defaultPath is set when neither the image nor the request sets PATH.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errdefs.ErrInvalidArgument)...)
}

// command merges the request with the image the Kubernetes way: command
// replaces the entrypoint and, when given, drops the image's Cmd; args
// replace Cmd.
func command(cfg *runtimeapi.ContainerConfig, entrypoint, cmd []string) ([]string, error) {
	var out []string
	switch {
	case len(cfg.GetCommand()) > 0:
		out = append(append(out, cfg.GetCommand()...), cfg.GetArgs()...)
	case len(cfg.GetArgs()) > 0:
		out = append(append(out, entrypoint...), cfg.GetArgs()...)
	default:
		out = append(append(out, entrypoint...), cmd...)
	}
	if len(out) == 0 || out[0] == "" {
		return nil, invalid("no command: neither the request nor the image sets one")
	}
	for i, a := range out {
		if strings.ContainsRune(a, 0) {
			return nil, invalid("command argument contains a NUL byte")
		}
		if len(a) >= maxArgLen {
			return nil, invalid("command argument %d is %d bytes long: the kernel runs no command with an argument of %d bytes or more", i, len(a), maxArgLen)
		}
	}
	return out, nil
}

// maxArgLen is the kernel's MAX_ARG_STRLEN (32 pages): execve fails with
// E2BIG on a longer argument or environment entry, which would surface
// only at start as a runtime error.
const maxArgLen = 32 * 4096

// checkEnvEntry refuses names and values that cannot be represented in
// an environment block, names that would be read as two variables, and a
// HOME with a newline: HOME is what passwd-style files and login tools
// take a line of (CVE-2022-4318; CRI-O refuses it the same way). Other
// values may hold newlines: Kubernetes passes Secret and ConfigMap values,
// which often end in one, as env values, and its conformance specs expect
// them verbatim ("value-1\n"); execve carries them as they are.
func checkEnvEntry(k, v string) error {
	if k == "" {
		return invalid("environment variable with an empty name")
	}
	if strings.ContainsAny(k, "=\x00\n\r") {
		return invalid("environment variable name %q contains '=', NUL or a newline", k)
	}
	if strings.ContainsRune(v, 0) {
		return invalid("environment variable %s: value contains NUL", k)
	}
	if k == "HOME" && strings.ContainsAny(v, "\n\r") {
		return invalid("environment variable HOME: value contains a newline")
	}
	if len(k)+1+len(v) >= maxArgLen {
		return invalid("environment variable %s is %d bytes long: the kernel runs no command with an entry of %d bytes or more", k, len(k)+1+len(v), maxArgLen)
	}
	return nil
}

// ValidateEnv checks the request's environment.
func ValidateEnv(envs []*runtimeapi.KeyValue) error {
	for _, kv := range envs {
		if err := checkEnvEntry(kv.GetKey(), string(kv.GetValue())); err != nil {
			return err
		}
	}
	return nil
}

// environment is the image's Env, overridden by the request's, plus
// PATH, HOSTNAME and HOME when not set, in a stable order (image order,
// then new names in request order).
func environment(imageEnv []string, envs []*runtimeapi.KeyValue, hostname, home string) ([]string, error) {
	var keys []string
	vals := map[string]string{}
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			keys = append(keys, k)
		}
		vals[k] = v
	}
	for _, e := range imageEnv {
		k, v, _ := strings.Cut(e, "=")
		if err := checkEnvEntry(k, v); err != nil {
			return nil, fmt.Errorf("image Env: %w", err)
		}
		set(k, v)
	}
	for _, kv := range envs {
		if err := checkEnvEntry(kv.GetKey(), string(kv.GetValue())); err != nil {
			return nil, err
		}
		set(kv.GetKey(), string(kv.GetValue()))
	}
	if _, ok := vals["PATH"]; !ok {
		k, v, _ := strings.Cut(defaultPath, "=")
		set(k, v)
	}
	if _, ok := vals["HOSTNAME"]; !ok && hostname != "" {
		set("HOSTNAME", hostname)
	}
	if _, ok := vals["HOME"]; !ok {
		set("HOME", home)
	}
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k+"="+vals[k])
	}
	return out, nil
}

// WorkingDir returns the process's cwd: the request's, else the image's,
// else "/". It must be absolute and must not point into /proc: a cwd like
// /proc/self/fd/7 would start the process in a host directory leaked
// through an fd of the runtime (CVE-2024-21626).
func WorkingDir(requested, image string) (string, error) {
	wd := requested
	if wd == "" {
		wd = image
	}
	if wd == "" {
		return "/", nil
	}
	if !path.IsAbs(wd) {
		return "", invalid("working directory %q is not absolute", wd)
	}
	if strings.ContainsAny(wd, "\x00\n") {
		return "", invalid("working directory contains NUL or a newline")
	}
	clean := path.Clean(wd)
	if clean == "/proc" || strings.HasPrefix(clean, "/proc/") {
		return "", invalid("working directory %q is inside /proc", wd)
	}
	for _, part := range strings.Split(wd, "/") {
		if part == ".." {
			return "", invalid("working directory %q contains '..'", wd)
		}
	}
	return clean, nil
}
