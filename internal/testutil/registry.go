package testutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// AuthRealm is the realm in the registry's Basic auth challenge.
const AuthRealm = "berth-test"

// bypassHeader marks the harness's own pushes: they skip fault injection
// and are not counted by Requests. Its value is a per-registry secret.
const bypassHeader = "X-Berth-Testutil-Push"

// RegistryOptions configures StartRegistry.
type RegistryOptions struct {
	// TLS serves HTTPS with a throwaway CA (see Registry.CACertPath).
	TLS bool
	// Username and Password, when Username is set, require HTTP Basic auth
	// on every request.
	Username, Password string
	// Handler optionally wraps the registry for fault injection (see
	// CorruptBlobs, StallBlobs, RefuseAll). It sits inside the auth check
	// and sees every request except the harness's own Push.
	Handler func(http.Handler) http.Handler
}

// Registry is an OCI distribution registry served from the test process
// on 127.0.0.1, with in-memory storage. It is closed at test cleanup.
type Registry struct {
	// Host is "127.0.0.1:PORT".
	Host string
	// CACertPath is the PEM file of the CA that signed the server
	// certificate; empty without TLS.
	CACertPath string
	// CertsDir is laid out like /etc/containers/certs.d: it holds
	// <CertsDir>/<Host>/ca.crt. Empty without TLS.
	CertsDir string

	opts     RegistryOptions
	srv      *httptest.Server
	roots    *x509.CertPool
	secret   string
	requests atomic.Int64
	mu       sync.Mutex
	log      []string
}

// StartRegistry starts a registry on a random port of 127.0.0.1.
func StartRegistry(t testing.TB, opts RegistryOptions) *Registry {
	t.Helper()
	var secret [16]byte
	if _, err := rand.Read(secret[:]); err != nil {
		t.Fatalf("registry secret: %v", err)
	}
	r := &Registry{opts: opts, secret: hex.EncodeToString(secret[:])}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	faulty := inner
	if opts.Handler != nil {
		faulty = opts.Handler(inner)
	}
	r.srv = httptest.NewUnstartedServer(r.route(r.auth(inner), r.auth(faulty)))
	r.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if opts.TLS {
		cert, err := r.makeCerts(t.TempDir())
		if err != nil {
			t.Fatalf("registry certificates: %v", err)
		}
		r.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		r.srv.StartTLS()
	} else {
		r.srv.Start()
	}
	t.Cleanup(func() {
		r.srv.CloseClientConnections() // unblocks stalled handlers
		r.srv.Close()
	})
	r.Host = r.srv.Listener.Addr().String()
	if opts.TLS {
		if err := r.writeCertsDir(); err != nil {
			t.Fatalf("registry certs.d: %v", err)
		}
	}
	return r
}

// route sends the harness's pushes to direct and everything else,
// counted, to faulty.
func (r *Registry) route(direct, faulty http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if subtle.ConstantTimeCompare([]byte(req.Header.Get(bypassHeader)), []byte(r.secret)) == 1 {
			direct.ServeHTTP(w, req)
			return
		}
		r.requests.Add(1)
		r.mu.Lock()
		r.log = append(r.log, req.Method+" "+req.URL.Path)
		r.mu.Unlock()
		faulty.ServeHTTP(w, req)
	})
}

// auth enforces Basic auth when a username is configured.
func (r *Registry) auth(next http.Handler) http.Handler {
	if r.opts.Username == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		u, p, ok := req.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(r.opts.Username)) != 1 ||
			subtle.ConstantTimeCompare([]byte(p), []byte(r.opts.Password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+AuthRealm+`"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		next.ServeHTTP(w, req)
	})
}

// Ref returns the full reference of repoTag in this registry, e.g.
// Ref("busybox:1.36") == "127.0.0.1:PORT/busybox:1.36".
func (r *Registry) Ref(repoTag string) string { return r.Host + "/" + repoTag }

// Push uploads img as r.Host/repoTag (e.g. "busybox:1.36") and returns
// its manifest digest. Pushes go through TLS and auth like any client,
// but skip the fault-injection Handler and are not counted in Requests.
func (r *Registry) Push(t testing.TB, repoTag string, img v1.Image) v1.Hash {
	t.Helper()
	ref, err := name.ParseReference(r.Ref(repoTag))
	if err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
	opts := r.RemoteOptions()
	opts = append(opts, remote.WithTransport(headerTransport{
		base: r.transport(), key: bypassHeader, value: r.secret,
	}))
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatalf("push %s: digest: %v", ref, err)
	}
	return d
}

// RemoteOptions returns go-containerregistry options that reach this
// registry as an ordinary client: trusting its CA and sending its
// credentials (if any). Requests made with them are counted and see the
// fault-injection Handler.
func (r *Registry) RemoteOptions() []remote.Option {
	opts := []remote.Option{remote.WithTransport(r.transport())}
	if r.opts.Username != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: r.opts.Username, Password: r.opts.Password}))
	}
	return opts
}

// Requests returns how many HTTP requests the registry has served to
// clients other than Push.
func (r *Registry) Requests() int { return int(r.requests.Load()) }

// RequestLog returns "METHOD /path" for every request counted by
// Requests, oldest first; e.g. count "GET /v2/<repo>/blobs/" prefixes to
// check that a layer was fetched once.
func (r *Registry) RequestLog() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.log...)
}

// RegistriesConf returns a registries.conf (v2) entry for this registry:
// insecure (plain HTTP allowed, no TLS verification) unless it serves TLS.
// With TLS the client must trust CertsDir instead.
func (r *Registry) RegistriesConf() string {
	return fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = %t\n", r.Host, !r.opts.TLS)
}

// transport is a fresh HTTP transport trusting the registry's CA.
func (r *Registry) transport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if r.roots != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: r.roots, MinVersion: tls.VersionTLS12}
	}
	return tr
}

type headerTransport struct {
	base       http.RoundTripper
	key, value string
}

func (h headerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set(h.key, h.value)
	return h.base.RoundTrip(req)
}

// makeCerts creates a CA and a server certificate for 127.0.0.1 and
// localhost, writes the CA to dir/ca.pem and remembers it as a root.
func (r *Registry) makeCerts(dir string) (tls.Certificate, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("CA key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "berth test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse CA certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	r.CACertPath = filepath.Join(dir, "ca.pem")
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	if err := os.WriteFile(r.CACertPath, caPEM, 0o644); err != nil {
		return tls.Certificate{}, fmt.Errorf("write CA: %w", err)
	}
	r.CertsDir = filepath.Join(dir, "certs.d")
	r.roots = x509.NewCertPool()
	r.roots.AddCert(ca)
	return tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}, nil
}

// writeCertsDir copies the CA to <CertsDir>/<Host>/ca.crt once the port
// is known.
func (r *Registry) writeCertsDir() error {
	caPEM, err := os.ReadFile(r.CACertPath)
	if err != nil {
		return fmt.Errorf("read CA: %w", err)
	}
	hostDir := filepath.Join(r.CertsDir, r.Host)
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", hostDir, err)
	}
	if err := os.WriteFile(filepath.Join(hostDir, "ca.crt"), caPEM, 0o644); err != nil {
		return fmt.Errorf("write ca.crt: %w", err)
	}
	return nil
}
