package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func portForwardCommand(g *globals) *cobra.Command {
	var addresses []string
	cmd := &cobra.Command{
		Use:   "port-forward [flags] POD [LOCAL_PORT:]REMOTE_PORT...",
		Short: "Forward local ports to ports inside a pod",
		Long: `Listen on local ports and forward each connection to a port in the pod's
network namespace, until interrupted. LOCAL_PORT 0 or left out picks a port.

Each connection has its own streaming session: one the pod refuses (nothing
listens on the port) or that fails is reported on standard error and closed,
and the forward goes on serving the others.`,
		Example: `  berth port-forward 3f2a 8080:80
  berth port-forward --address 0.0.0.0 web :5432`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ports, err := parseForwardPorts(args[1:])
			if err != nil {
				return err
			}
			return g.withClient(func(c *client) error {
				pod, err := c.resolvePod(args[0])
				if err != nil {
					return err
				}
				// Fail now, not on the first connection, if the runtime cannot forward.
				if _, err := c.portForwardURL(pod.Id, ports[0].Remote); err != nil {
					return err
				}
				ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				f := &forwarder{c: c, podID: pod.Id, out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr()}
				return f.run(ctx, addresses, ports)
			})
		},
		ValidArgsFunction: completePods(g),
	}
	cmd.Flags().StringSliceVar(&addresses, "address", []string{"localhost"}, "local addresses to listen on (comma separated)")
	return cmd
}

// forwardedPort is one LOCAL:REMOTE pair; Local 0 picks a free port.
type forwardedPort struct{ Local, Remote uint16 }

// parseForwardPorts reads REMOTE, LOCAL:REMOTE and :REMOTE.
func parseForwardPorts(specs []string) ([]forwardedPort, error) {
	var ports []forwardedPort
	for _, spec := range specs {
		local, remote, found := strings.Cut(spec, ":")
		if !found {
			remote = local
		}
		if local == "" {
			local = "0"
		}
		l, err := strconv.ParseUint(local, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("port %q: local port %q is not a port number", spec, local)
		}
		r, err := strconv.ParseUint(remote, 10, 16)
		if err != nil || r == 0 {
			return nil, fmt.Errorf("port %q: remote port %q is not a port number", spec, remote)
		}
		ports = append(ports, forwardedPort{uint16(l), uint16(r)})
	}
	return ports, nil
}

// listenHosts expands "localhost" to both loopbacks, as kubectl does.
func listenHosts(addresses []string) ([]string, error) {
	var hosts []string
	for _, a := range addresses {
		switch {
		case a == "localhost":
			hosts = append(hosts, "127.0.0.1", "::1")
		case net.ParseIP(a) != nil:
			hosts = append(hosts, a)
		default:
			return nil, fmt.Errorf("--address %q: want an IP address or localhost", a)
		}
	}
	return hosts, nil
}

// forwarder serves the listeners of one port-forward command.
type forwarder struct {
	c           *client
	podID       string
	out, errOut io.Writer
	mu          sync.Mutex // serializes writes to out and errOut
	connections atomic.Int64
}

func (f *forwarder) printf(w io.Writer, format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fmt.Fprintf(w, format, args...)
}

// run listens on every address for every port and forwards connections
// until ctx ends. An address of "localhost" that fails on one loopback
// (no IPv6) is fine as long as the other listens.
func (f *forwarder) run(ctx context.Context, addresses []string, ports []forwardedPort) error {
	hosts, err := listenHosts(addresses)
	if err != nil {
		return err
	}
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for _, p := range ports {
		local := p.Local
		listening := 0
		for _, h := range hosts {
			l, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(int(local))))
			if err != nil {
				f.printf(f.errOut, "Unable to listen on %s: %v\n", net.JoinHostPort(h, strconv.Itoa(int(local))), err)
				continue
			}
			if local == 0 { // the other addresses take the port picked here
				local = uint16(l.Addr().(*net.TCPAddr).Port)
			}
			listeners = append(listeners, l)
			listening++
			f.printf(f.out, "Forwarding from %s -> %d\n", l.Addr(), p.Remote)
			go f.accept(ctx, l, forwardedPort{local, p.Remote})
		}
		if listening == 0 {
			return fmt.Errorf("port-forward: cannot listen on port %d on any of %s", p.Local, strings.Join(addresses, ", "))
		}
	}
	<-ctx.Done()
	return nil
}

func (f *forwarder) accept(ctx context.Context, l net.Listener, p forwardedPort) {
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				f.printf(f.errOut, "Stopped accepting on %s: %v\n", l.Addr(), err)
			}
			return
		}
		go func() {
			defer conn.Close()
			n := f.connections.Add(1)
			f.printf(f.out, "Handling connection %d for %d\n", n, p.Local)
			if err := f.handle(ctx, conn, p.Remote); err != nil && ctx.Err() == nil {
				f.printf(f.errOut, "Connection %d for %d -> %d failed: %v\n", n, p.Local, p.Remote, err)
			}
		}()
	}
}

// portForwardURL asks the runtime for a streaming URL into the pod.
func (c *client) portForwardURL(podID string, port uint16) (*url.URL, error) {
	resp, err := call(c, "port-forward to "+podID, c.runtime.PortForward, &runtimeapi.PortForwardRequest{PodSandboxId: podID, Port: []int32{int32(port)}})
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(resp.Url)
	if err != nil {
		return nil, fmt.Errorf("streaming URL %q: %w", resp.Url, err)
	}
	return u, nil
}

// handle forwards one local connection over a streaming session of its
// own, so that its failure cannot end the others'. It returns what the
// runtime reported on the connection's error stream.
func (f *forwarder) handle(ctx context.Context, conn net.Conn, port uint16) error {
	u, err := f.c.portForwardURL(f.podID, port)
	if err != nil {
		return err
	}
	transport, upgrader, err := spdy.RoundTripperFor(insecureConfig())
	if err != nil {
		return fmt.Errorf("port-forward transport: %w", err)
	}
	session, _, err := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u).Dial(portforward.PortForwardProtocolV1Name)
	if err != nil {
		return fmt.Errorf("connect to the streaming server: %w", err)
	}
	defer session.Close()
	defer context.AfterFunc(ctx, func() { session.Close() })()

	headers := http.Header{}
	headers.Set(corev1.StreamType, corev1.StreamTypeError)
	headers.Set(corev1.PortHeader, strconv.Itoa(int(port)))
	headers.Set(corev1.PortForwardRequestIDHeader, "0")
	errStream, err := session.CreateStream(headers)
	if err != nil {
		return fmt.Errorf("create error stream: %w", err)
	}
	errStream.Close() // nothing is sent on it
	reported := make(chan []byte, 1)
	go func() {
		msg, _ := io.ReadAll(errStream)
		reported <- msg
	}()
	headers.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := session.CreateStream(headers)
	if err != nil {
		return fmt.Errorf("create data stream: %w", err)
	}
	copyStreams(conn, data)
	if msg := <-reported; len(msg) > 0 {
		return errors.New(string(msg))
	}
	return nil
}

// copyStreams copies both ways until the pod's side ends (or the local
// side fails), passing on the local side's half-close.
func copyStreams(conn net.Conn, data httpstream.Stream) {
	fromPod := make(chan struct{})
	go func() {
		_, _ = io.Copy(conn, data)
		close(fromPod)
	}()
	toPodFailed := make(chan struct{})
	go func() {
		_, err := io.Copy(data, conn)
		data.Close() // nothing more to send
		if err != nil {
			close(toPodFailed)
		}
	}()
	select {
	case <-fromPod:
	case <-toPodFailed:
	}
	_ = data.Reset()
}
