package network

import (
	"context"
	"fmt"
	"os"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
)

// pluginExec runs CNI plugins as libcni's default executor does, but
// gives up waiting when the context ends. libcni kills a plugin whose
// context ends, then still waits for its output pipe to close, which a
// child the plugin started (a forked helper, a `sleep`) can hold open
// for as long as it lives: the pod's creation would hang past its
// timeout and its undo would never run. The abandoned wait ends when
// that child does.
type pluginExec struct{}

func (pluginExec) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		// A plugin's stderr goes to berthd's, as with libcni's default.
		out, err := (&invoke.RawExec{Stderr: os.Stderr}).ExecPlugin(ctx, pluginPath, stdin, environ)
		done <- result{out, err}
	}()
	select {
	case r := <-done:
		return r.out, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("CNI plugin %s: %w", pluginPath, ctx.Err())
	}
}

func (pluginExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

func (pluginExec) Decode(jsonBytes []byte) (version.PluginInfo, error) {
	var d version.PluginDecoder
	return d.Decode(jsonBytes)
}
