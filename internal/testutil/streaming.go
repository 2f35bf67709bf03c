package testutil

import (
	"context"
	"net/url"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
)

// StreamSPDY runs one exec or attach session against a streaming URL with
// client-go's SPDY executor, the client the kubelet's proxy uses.
func StreamSPDY(ctx context.Context, rawURL string, opts remotecommand.StreamOptions) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	ex, err := remotecommand.NewSPDYExecutor(&rest.Config{}, "POST", u)
	if err != nil {
		return err
	}
	return ex.StreamWithContext(ctx, opts)
}

// SizeQueue hands terminal sizes sent on it to a TTY session; closing it
// ends the resizes.
type SizeQueue chan remotecommand.TerminalSize

// Next implements remotecommand.TerminalSizeQueue.
func (q SizeQueue) Next() *remotecommand.TerminalSize {
	sz, ok := <-q
	if !ok {
		return nil
	}
	return &sz
}
