package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func pullCommand(g *globals) *cobra.Command {
	var creds, auth, podConfig string
	var timeout time.Duration
	var quiet bool
	cmd := &cobra.Command{
		Use:   "pull IMAGE",
		Short: "Pull an image from a registry",
		Long: `Pull an image through the runtime's image service. On a terminal a
progress line shows the elapsed time and, as the runtime's image filesystem
grows, the bytes written so far.`,
		Example: `  berth pull busybox:latest
  berth pull --creds user:secret registry.example.com/app:1.0
  berth pull --auth dXNlcjpzZWNyZXQ= registry.example.com/app:1.0`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: args[0]}}
			var err error
			if req.Auth, err = pullAuth(creds, auth); err != nil {
				return err
			}
			if podConfig != "" {
				if req.SandboxConfig, err = loadPodConfig(podConfig); err != nil {
					return err
				}
			}
			return g.withClient(func(c *client) error {
				ref, err := c.pull(cmd.Context(), req, timeout, !quiet)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Image is up to date for %s\n", ref)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&creds, "creds", "", "registry credentials, USERNAME[:PASSWORD]")
	cmd.Flags().StringVar(&auth, "auth", "", "registry credentials, base64 of USERNAME:PASSWORD")
	cmd.Flags().StringVarP(&podConfig, "pod-config", "p", "", "pod sandbox config (JSON or YAML) to pull for")
	cmd.Flags().DurationVar(&timeout, "pull-timeout", 0, "give up after this long (0: no limit)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress display")
	return cmd
}

// pullAuth builds the CRI auth config from --creds or --auth.
func pullAuth(creds, auth string) (*runtimeapi.AuthConfig, error) {
	switch {
	case creds != "" && auth != "":
		return nil, fmt.Errorf("give --creds or --auth, not both")
	case creds != "":
		user, pass, _ := strings.Cut(creds, ":")
		if user == "" {
			return nil, fmt.Errorf("--creds: want USERNAME[:PASSWORD]")
		}
		return &runtimeapi.AuthConfig{Username: user, Password: pass}, nil
	case auth != "":
		raw, err := base64.StdEncoding.DecodeString(auth)
		if err != nil {
			return nil, fmt.Errorf("--auth: not base64: %w", err)
		}
		if !strings.Contains(string(raw), ":") {
			return nil, fmt.Errorf("--auth: want the base64 of USERNAME:PASSWORD")
		}
		return &runtimeapi.AuthConfig{Auth: auth}, nil
	}
	return nil, nil
}

// pull pulls an image, with a progress line on stderr when it is a
// terminal, and returns the image reference the runtime reports.
func (c *client) pull(parent context.Context, req *runtimeapi.PullImageRequest, timeout time.Duration, show bool) (string, error) {
	ctx, cancel := parent, context.CancelFunc(func() {})
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(parent, timeout)
	}
	defer cancel()
	var stop func()
	if show && term.IsTerminal(int(os.Stderr.Fd())) {
		stop = startProgress(os.Stderr, "Pulling "+req.Image.Image, c.imageFSUsage)
	}
	resp, err := c.images.PullImage(ctx, req)
	if stop != nil {
		stop()
	}
	if err != nil {
		return "", fmt.Errorf("pull image %s: %w", req.Image.Image, err)
	}
	return resp.ImageRef, nil
}

// imageFSUsage sums the bytes used on the runtime's image filesystems.
func (c *client) imageFSUsage(ctx context.Context) (uint64, bool) {
	resp, err := c.images.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	if err != nil || len(resp.ImageFilesystems) == 0 {
		return 0, false
	}
	var n uint64
	for _, fs := range resp.ImageFilesystems {
		n += fs.GetUsedBytes().GetValue()
	}
	return n, true
}

// startProgress draws a spinner with the elapsed time and, when probe can
// measure it, the bytes the pull has written so far. The returned func
// stops it and clears the line.
func startProgress(w io.Writer, label string, probe func(context.Context) (uint64, bool)) func() {
	ctx, cancel := context.WithCancel(context.Background())
	start := time.Now()
	var written atomic.Int64
	written.Store(-1)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		base, ok := probe(ctx)
		for ok {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			var now uint64
			if now, ok = probe(ctx); ok && now >= base {
				written.Store(int64(now - base))
			}
		}
	}()
	go func() {
		defer wg.Done()
		tick := time.NewTicker(120 * time.Millisecond)
		defer tick.Stop()
		for frame := 0; ; frame++ {
			fmt.Fprintf(w, "\r\033[K%s", progressLine(frame, label, time.Since(start), written.Load()))
			select {
			case <-ctx.Done():
				fmt.Fprint(w, "\r\033[K")
				return
			case <-tick.C:
			}
		}
	}()
	return func() {
		cancel()
		wg.Wait()
	}
}

// progressLine is one frame of the progress display; written < 0 means
// the size is not known.
func progressLine(frame int, label string, elapsed time.Duration, written int64) string {
	const spin = `|/-\`
	line := fmt.Sprintf("%c %s", spin[frame%len(spin)], label)
	if written > 0 {
		line += "  " + humanSize(uint64(written)) + " written"
	}
	return line + fmt.Sprintf("  %.1fs", elapsed.Seconds())
}
