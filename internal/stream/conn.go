package stream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
)

// The streaming library hijacks each connection for SPDY or WebSocket, and
// after that nothing tells a running exec that its client went away: the
// request context is not cancelled, and port-forward is handed none at
// all. Each accepted connection therefore carries a context that is
// cancelled when a read from it fails for a reason other than a deadline
// or when it is closed. http.Server passes it to handlers through
// ConnContext; port-forward finds it by the stream's remote address.

// trackedConn is an accepted connection with a context of its own.
type trackedConn struct {
	net.Conn
	ctx    context.Context
	cancel context.CancelFunc
	reg    *connRegistry
	once   sync.Once
}

func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			c.cancel()
		}
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.cancel()
		c.reg.remove(c)
	})
	return c.Conn.Close()
}

// connRegistry knows the live connections, by remote address.
type connRegistry struct {
	mu     sync.Mutex
	byAddr map[string]*trackedConn
}

func newConnRegistry() *connRegistry {
	return &connRegistry{byAddr: map[string]*trackedConn{}}
}

func (r *connRegistry) add(c net.Conn) *trackedConn {
	ctx, cancel := context.WithCancel(context.Background())
	tc := &trackedConn{Conn: c, ctx: ctx, cancel: cancel, reg: r}
	r.mu.Lock()
	r.byAddr[c.RemoteAddr().String()] = tc
	r.mu.Unlock()
	return tc
}

func (r *connRegistry) remove(c *trackedConn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byAddr[c.RemoteAddr().String()] == c {
		delete(r.byAddr, c.RemoteAddr().String())
	}
}

// lookup returns the context of the connection a stream belongs to, or
// nil when the stream does not say (WebSocket streams do not).
func (r *connRegistry) lookup(stream any) context.Context {
	ra, ok := stream.(interface{ RemoteAddr() net.Addr })
	if !ok || ra.RemoteAddr() == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.byAddr[ra.RemoteAddr().String()]; c != nil {
		return c.ctx
	}
	return nil
}

// connContext is http.Server.ConnContext: requests on a connection get a
// context that ends with the connection, even after a hijack.
func (r *connRegistry) connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	tc, ok := c.(*trackedConn)
	if !ok {
		return ctx
	}
	ctx, cancel := context.WithCancel(ctx)
	context.AfterFunc(tc.ctx, cancel)
	return ctx
}

// closeAll closes every connection, hijacked ones included (http.Server
// does not close those).
func (r *connRegistry) closeAll() {
	r.mu.Lock()
	conns := make([]*trackedConn, 0, len(r.byAddr))
	for _, c := range r.byAddr {
		conns = append(conns, c)
	}
	r.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// trackingListener registers every accepted connection.
type trackingListener struct {
	net.Listener
	reg *connRegistry
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.reg.add(c), nil
}

// tlsFiles holds the certificate, key and CA files and what was last
// loaded from them; every handshake uses the latest.
type tlsFiles struct {
	cert, key, ca string
	state         atomic.Pointer[tlsState]
}

type tlsState struct {
	cert tls.Certificate
	cas  *x509.CertPool // nil: no client certificates asked for
}

// load reads the files; on error the previous state stays.
func (t *tlsFiles) load() error {
	cert, err := tls.LoadX509KeyPair(t.cert, t.key)
	if err != nil {
		return fmt.Errorf("streaming TLS: load %s and %s: %w", t.cert, t.key, err)
	}
	st := &tlsState{cert: cert}
	if t.ca != "" {
		pem, err := os.ReadFile(t.ca)
		if err != nil {
			return fmt.Errorf("streaming TLS: read CA: %w", err)
		}
		st.cas = x509.NewCertPool()
		if !st.cas.AppendCertsFromPEM(pem) {
			return fmt.Errorf("streaming TLS: %s holds no PEM certificate", t.ca)
		}
	}
	t.state.Store(st)
	return nil
}

// listener wraps ln in TLS. HTTP/1.1 only: SPDY and WebSocket upgrades do
// not exist in HTTP/2.
func (t *tlsFiles) listener(ln net.Listener) net.Listener {
	base := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	cfg := base.Clone()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		st := t.state.Load()
		c := base.Clone()
		c.Certificates = []tls.Certificate{st.cert}
		if st.cas != nil {
			c.ClientCAs = st.cas
			c.ClientAuth = tls.RequireAndVerifyClientCert
		}
		return c, nil
	}
	return tls.NewListener(ln, cfg)
}
