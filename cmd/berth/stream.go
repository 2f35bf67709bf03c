package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	mobyterm "github.com/moby/term"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	restclient "k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/util/exec"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// streamCommands are exec, attach and port-forward.
func streamCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{execCommand(g), attachCommand(g), portForwardCommand(g)}
}

// ttyFlags are the terminal options of exec and attach.
type ttyFlags struct {
	stdin, tty bool
}

func (t *ttyFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVarP(&t.stdin, "interactive", "i", false, "pass standard input through")
	cmd.Flags().BoolVarP(&t.tty, "tty", "t", false, "use a terminal")
}

func execCommand(g *globals) *cobra.Command {
	t := &ttyFlags{}
	var sync bool
	var timeout string
	cmd := &cobra.Command{
		Use:   "exec [flags] CONTAINER COMMAND [ARG...]",
		Short: "Run a command in a running container",
		Long: `Run a command in a running container. With --sync it runs through ExecSync
and prints the output once the command ends; otherwise it streams through the
runtime's streaming server, with -i for input and -t for a terminal. berth
exits with the command's exit code, or 124 when --sync --timeout killed it.`,
		Example: `  berth exec -it 9c1e sh
  berth exec -s web cat /etc/hostname
  berth exec --sync --timeout 5 web sleep 1`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(func(c *client) error {
				ctr, err := c.resolveContainer(args[0])
				if err != nil {
					return err
				}
				if sync {
					limit, err := graceSeconds("--timeout", timeout)
					if err != nil {
						return err
					}
					return c.execSync(cmd, ctr.Id, args[1:], limit)
				}
				resp, err := call(c, "exec in "+ctr.Id, c.runtime.Exec, &runtimeapi.ExecRequest{
					ContainerId: ctr.Id, Cmd: args[1:], Tty: t.tty, Stdin: t.stdin, Stdout: true, Stderr: !t.tty,
				})
				if err != nil {
					return err
				}
				return stream(cmd.Context(), resp.Url, t, nil, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
			})
		},
		ValidArgsFunction: completeContainers(g),
	}
	cmd.Flags().SetInterspersed(false)
	t.register(cmd)
	cmd.Flags().BoolVarP(&sync, "sync", "s", false, "run through ExecSync: no input, output printed at the end")
	cmd.Flags().StringVar(&timeout, "timeout", "0", "with --sync, time before the command is killed (berth then exits 124): seconds or a duration (0: no limit)")
	return cmd
}

// execSync runs a command through ExecSync and passes its exit code on.
func (c *client) execSync(cmd *cobra.Command, id string, argv []string, timeout int64) error {
	d := c.timeout
	if timeout == 0 {
		d = 0
	} else if d > 0 {
		d += time.Duration(timeout) * time.Second
	}
	ctx, cancel := withTimeout(d)
	defer cancel()
	resp, err := c.runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: argv, Timeout: timeout})
	timedOut := func() error {
		return &exitError{code: exitTimedOut, msg: fmt.Sprintf("command timed out after %s", time.Duration(timeout)*time.Second)}
	}
	if err != nil {
		if timeout > 0 && status.Code(err) == codes.DeadlineExceeded {
			return timedOut()
		}
		return fmt.Errorf("exec in %s: %w", id, err)
	}
	// The runtime kills a command at its timeout and says so at the end
	// of its stderr, as conmon does; berth says it on a line of its own.
	stderr, killed := bytes.CutSuffix(resp.Stderr, []byte(runtimeTimedOut))
	killed = killed && timeout > 0 && resp.ExitCode != 0
	switch {
	case !killed:
		stderr = resp.Stderr
	case len(stderr) > 0 && !bytes.HasSuffix(stderr, []byte("\n")):
		stderr = append(stderr, '\n')
	}
	if _, err := cmd.OutOrStdout().Write(resp.Stdout); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	if _, err := cmd.ErrOrStderr().Write(stderr); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	if killed {
		return timedOut()
	}
	if resp.ExitCode != 0 {
		return &exitError{code: int(resp.ExitCode)}
	}
	return nil
}

// exitTimedOut is berth's exit code when exec --sync --timeout kills the
// command, timeout(1)'s.
const exitTimedOut = 124

// runtimeTimedOut ends the stderr of an ExecSync killed at its timeout in
// berthd and CRI-O (conmon's wording).
const runtimeTimedOut = "command timed out"

func attachCommand(g *globals) *cobra.Command {
	t := &ttyFlags{}
	var detachKeys string
	var keys []byte
	cmd := &cobra.Command{
		Use:   "attach [flags] CONTAINER",
		Short: "Attach to a running container's standard streams",
		Long: `Attach to a running container's output, and with -i to its input. -t must
match the container's own tty setting.

With -i, typing the detach keys (Ctrl-P Ctrl-Q unless --detach-keys says
otherwise, as in podman) ends the session and leaves the container running.
--detach-keys takes comma-separated keys: a character, ctrl-<a-z, @, [, \, ],
^ or _>, or DEL; "" turns detaching off. Ctrl-C is passed to the container.`,
		Example: `  berth attach 9c1e
  berth attach -it web                      # Ctrl-P Ctrl-Q detaches
  berth attach -it --detach-keys ctrl-x,x web`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(func(c *client) error {
				ctr, err := c.resolveContainer(args[0])
				if err != nil {
					return err
				}
				resp, err := call(c, "attach to "+ctr.Id, c.runtime.Attach, &runtimeapi.AttachRequest{
					ContainerId: ctr.Id, Tty: t.tty, Stdin: t.stdin, Stdout: true, Stderr: !t.tty,
				})
				if err != nil {
					return err
				}
				return stream(cmd.Context(), resp.Url, t, keys, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
			})
		},
		ValidArgsFunction: completeContainers(g),
	}
	t.register(cmd)
	cmd.Flags().StringVar(&detachKeys, "detach-keys", defaultDetachKeys, "keys that detach from the container, leaving it running (\"\" for none)")
	cmd.PreRunE = func(*cobra.Command, []string) error {
		var err error
		if keys, err = parseDetachKeys(detachKeys); err != nil {
			return err
		}
		return nil
	}
	return cmd
}

// defaultDetachKeys are podman's and docker's: Ctrl-P Ctrl-Q.
const defaultDetachKeys = "ctrl-p,ctrl-q"

// parseDetachKeys reads --detach-keys; "" is no keys.
func parseDetachKeys(keys string) ([]byte, error) {
	if keys == "" {
		return nil, nil
	}
	b, err := mobyterm.ToBytes(keys)
	if err != nil {
		return nil, fmt.Errorf("--detach-keys %q: %w", keys, err)
	}
	return b, nil
}

// insecureConfig is the client config for a runtime's streaming server.
func insecureConfig() *restclient.Config {
	return &restclient.Config{TLSClientConfig: restclient.TLSClientConfig{Insecure: true}}
}

// stream connects the local standard streams to an exec or attach URL.
// Reading detachKeys from stdin ends the session without error.
func stream(ctx context.Context, rawURL string, t *ttyFlags, detachKeys []byte, stdin io.Reader, stdout, stderr io.Writer) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("streaming URL %q: %w", rawURL, err)
	}
	// SPDY, as the kubelet's proxy uses: the streaming server of
	// cri-streaming v0.37 speaks only the v4 WebSocket protocol, which
	// client-go's WebSocket executor (v5) does not accept.
	ex, err := remotecommand.NewSPDYExecutor(insecureConfig(), http.MethodPost, u)
	if err != nil {
		return fmt.Errorf("streaming to %s: %w", u.Host, err)
	}
	opts := remotecommand.StreamOptions{Stdout: stdout, Tty: t.tty}
	var detach *detachReader
	if t.stdin {
		opts.Stdin = stdin
		if len(detachKeys) > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			defer cancel()
			detach = &detachReader{r: mobyterm.NewEscapeProxy(stdin, detachKeys), cancel: cancel, done: make(chan struct{})}
			defer close(detach.done)
			opts.Stdin = detach
		}
	}
	if !t.tty {
		opts.Stderr = stderr
	}
	if f, ok := stdin.(*os.File); ok && t.tty && t.stdin && term.IsTerminal(int(f.Fd())) {
		state, err := term.MakeRaw(int(f.Fd()))
		if err != nil {
			return fmt.Errorf("set terminal raw: %w", err)
		}
		defer term.Restore(int(f.Fd()), state)
		sizes := newSizeQueue(int(f.Fd()))
		defer sizes.stop()
		opts.TerminalSizeQueue = sizes
	}
	err = ex.StreamWithContext(ctx, opts)
	if detach != nil && detach.detached.Load() {
		return nil
	}
	var ce exec.CodeExitError
	if errors.As(err, &ce) {
		return &exitError{code: ce.Code}
	}
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	return nil
}

// detachReader passes stdin on until the detach keys are read, then ends
// the session by cancelling its context. It does not end stdin: that would
// half-close the container's stdin, which the runtime may pass on.
type detachReader struct {
	r        io.Reader // an escape proxy, which fails with EscapeError on the keys
	cancel   context.CancelFunc
	done     chan struct{} // closed once the session is over
	detached atomic.Bool
}

func (d *detachReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if !errors.As(err, new(mobyterm.EscapeError)) {
		return n, err
	}
	if n > 0 {
		return n, nil // what came before the keys; the proxy fails again next time
	}
	d.detached.Store(true)
	d.cancel()
	<-d.done
	return 0, io.EOF
}

// sizeQueue reports the terminal's size at start and on every SIGWINCH.
type sizeQueue struct {
	fd    int
	sigs  chan os.Signal
	done  chan struct{}
	first bool
}

func newSizeQueue(fd int) *sizeQueue {
	q := &sizeQueue{fd: fd, sigs: make(chan os.Signal, 1), done: make(chan struct{}), first: true}
	signal.Notify(q.sigs, syscall.SIGWINCH)
	return q
}

func (q *sizeQueue) Next() *remotecommand.TerminalSize {
	if !q.first {
		select {
		case <-q.sigs:
		case <-q.done:
			return nil
		}
	}
	q.first = false
	w, h, err := term.GetSize(q.fd)
	if err != nil {
		return nil
	}
	return &remotecommand.TerminalSize{Width: uint16(w), Height: uint16(h)}
}

func (q *sizeQueue) stop() {
	signal.Stop(q.sigs)
	close(q.done)
}
