package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// maxMsgSize matches the kubelet's limit for CRI responses.
const maxMsgSize = 16 << 20

// client is a connection to a CRI runtime (and its image service).
type client struct {
	conns    []*grpc.ClientConn
	runtime  runtimeapi.RuntimeServiceClient
	images   runtimeapi.ImageServiceClient
	timeout  time.Duration
	settings settings
	// noListStreams is set once the runtime has answered a list stream
	// with Unimplemented: later lists go straight to the unary calls.
	noListStreams atomic.Bool
}

// connect dials the runtime endpoint and, when it differs, the image
// endpoint. Dialing is lazy: an unreachable socket fails the first call.
func (g *globals) connect() (*client, error) {
	s, err := g.settings()
	if err != nil {
		return nil, err
	}
	rt, err := dial(s.runtimeEndpoint, s.debug)
	if err != nil {
		return nil, err
	}
	c := &client{conns: []*grpc.ClientConn{rt}, runtime: runtimeapi.NewRuntimeServiceClient(rt), timeout: s.timeout, settings: s}
	img := rt
	if s.imageEndpoint != s.runtimeEndpoint {
		if img, err = dial(s.imageEndpoint, s.debug); err != nil {
			rt.Close()
			return nil, err
		}
		c.conns = append(c.conns, img)
	}
	c.images = runtimeapi.NewImageServiceClient(img)
	return c, nil
}

// dial opens a gRPC client for a unix:// endpoint (a bare path is taken
// as a unix socket).
func dial(endpoint string, debug bool) (*grpc.ClientConn, error) {
	target := endpoint
	switch {
	case strings.HasPrefix(target, "unix:"): // unix:///abs or unix:relative
	case strings.HasPrefix(target, "/"):
		target = "unix://" + target
	case strings.Contains(target, "://"):
		return nil, fmt.Errorf("endpoint %q: only unix:// sockets are supported", endpoint)
	default:
		// A relative path: gRPC reads "unix://x.sock" as the authority
		// x.sock, and takes "unix:x.sock" as the path it is.
		target = "unix:" + target
	}
	d := &dialer{}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize)),
		grpc.WithContextDialer(d.dial),
		grpc.WithChainUnaryInterceptor(d.unary),
		grpc.WithChainStreamInterceptor(d.stream),
	}
	if debug {
		opts = append(opts, grpc.WithChainUnaryInterceptor(debugUnary), grpc.WithChainStreamInterceptor(debugStream))
	}
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", endpoint, err)
	}
	return conn, nil
}

// withClient connects, runs fn and closes the connection: the frame of
// every command that talks to the runtime.
func (g *globals) withClient(fn func(c *client) error) error {
	c, err := g.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

// call makes one CRI call bounded by --timeout; a failure is prefixed
// with what. Calls that must share one deadline take c.ctx() instead.
func call[Req, Resp any](c *client, what string, fn func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	resp, err := fn(ctx, req)
	if err != nil {
		return resp, fmt.Errorf("%s: %w", what, err)
	}
	return resp, nil
}

// ctx returns a context bounded by --timeout for one call.
func (c *client) ctx() (context.Context, context.CancelFunc) {
	return withTimeout(c.timeout)
}

// withTimeout is a background context bounded by d; 0 means no bound.
func withTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(context.Background())
	}
	return context.WithTimeout(context.Background(), d)
}

// Close closes every connection.
func (c *client) Close() error {
	var first error
	for _, conn := range c.conns {
		if err := conn.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// debugUnary prints each request and response, as crictl --debug does.
func debugUnary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	fmt.Fprintf(os.Stderr, "DEBU %s request: %s\n", method, debugJSON(req))
	start := time.Now()
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "DEBU %s failed after %s: %v\n", method, time.Since(start).Round(time.Millisecond), err)
		return err
	}
	fmt.Fprintf(os.Stderr, "DEBU %s response (%s): %s\n", method, time.Since(start).Round(time.Millisecond), debugJSON(reply))
	return nil
}

// debugStream notes the opening of a streaming call.
func debugStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	fmt.Fprintf(os.Stderr, "DEBU %s stream opened\n", method)
	return streamer(ctx, desc, cc, method, opts...)
}

func debugJSON(v any) string {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Sprint(v)
	}
	b, err := protojson.Marshal(m)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
