package stream

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/runtime"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with the given
// serial (usable as its own CA) to dir/name.{crt,key}.
func writeCert(t *testing.T, dir, name string, serial int64) (crt, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	crt, key = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return crt, key
}

func servedSerial(t *testing.T, host string, client *tls.Certificate) (int64, error) {
	t.Helper()
	cfg := &tls.Config{InsecureSkipVerify: true}
	if client != nil {
		cfg.Certificates = []tls.Certificate{*client}
	}
	c, err := tls.Dial("tcp", host, cfg)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	// The server checks client certificates after the handshake's first
	// flight; a read makes a refusal visible.
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
		return 0, err
	}
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TLS serves SPDY exec, follows Reload to new files and, with a CA,
// refuses clients without a certificate it signed.
func TestTLSReload(t *testing.T) {
	needTools(t)
	dir := t.TempDir()
	crt, key := writeCert(t, dir, "server", 1)
	cacrt, cakey := writeCert(t, dir, "client", 7)
	ctrs := &fakeContainers{m: map[string]runtime.ExecTarget{}}
	s, err := New(Config{Address: "127.0.0.1", Port: "0", TLS: true, CertFile: crt, KeyFile: key, WorkDir: t.TempDir()}, ctrs, nil, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u, _ := url.Parse(s.URL())
	if u.Scheme != "https" {
		t.Fatalf("URL %s", s.URL())
	}
	if n, err := servedSerial(t, u.Host, nil); err != nil || n != 1 {
		t.Fatalf("serial %d: %v", n, err)
	}

	// exec over TLS with the client kubectl uses.
	ctrs.set("c1", runDetached(t, []string{"sleep", "1000"}, nil))
	resp, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"echo", "over tls"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	eu, _ := url.Parse(resp.Url)
	ex, err := remotecommand.NewSPDYExecutor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{Insecure: true}}, "POST", eu)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := ex.StreamWithContext(t.Context(), remotecommand.StreamOptions{Stdout: &out}); err != nil || out.String() != "over tls\n" {
		t.Fatalf("exec over TLS: %v %q", err, out.String())
	}

	// New files (and a CA) after a reload.
	crt2, key2 := writeCert(t, dir, "server2", 2)
	for _, p := range [][2]string{{crt2, crt}, {key2, key}} {
		if err := os.Rename(p[0], p[1]); err != nil {
			t.Fatal(err)
		}
	}
	s.tls.ca = cacrt
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := servedSerial(t, u.Host, nil); err == nil {
		t.Error("a client without a certificate was let in")
	}
	cc, err := tls.LoadX509KeyPair(cacrt, cakey)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := servedSerial(t, u.Host, &cc); err != nil || n != 2 {
		t.Fatalf("after reload: serial %d: %v", n, err)
	}

	// A broken file keeps the certificate in use.
	if err := os.WriteFile(crt, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil {
		t.Error("reload of a broken certificate succeeded")
	}
	if n, err := servedSerial(t, u.Host, &cc); err != nil || n != 2 {
		t.Fatalf("after a failed reload: serial %d: %v", n, err)
	}
}
