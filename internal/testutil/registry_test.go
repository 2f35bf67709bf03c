package testutil

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.podman.io/image/v5/types"
)

func pull(t *testing.T, r *Registry, repoTag string, opts ...remote.Option) (v1.Image, error) {
	t.Helper()
	ref, err := name.ParseReference(r.Ref(repoTag))
	if err != nil {
		t.Fatal(err)
	}
	return remote.Image(ref, append(r.RemoteOptions(), opts...)...)
}

func TestRegistryVariants(t *testing.T) {
	img := BusyboxImage(t, ImageSpec{Cmd: []string{"sleep", "1000"}})
	for _, tc := range []struct {
		name string
		opts RegistryOptions
	}{
		{"plain", RegistryOptions{}},
		{"tls", RegistryOptions{TLS: true}},
		{"auth", RegistryOptions{Username: "alice", Password: "s3cret"}},
		{"tls+auth", RegistryOptions{TLS: true, Username: "alice", Password: "s3cret"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := StartRegistry(t, tc.opts)
			if !strings.HasPrefix(r.Host, "127.0.0.1:") {
				t.Fatalf("host = %s", r.Host)
			}
			want := r.Push(t, "busybox:1.36", img)
			if want != digestOf(t, img) {
				t.Fatalf("push digest %s, image digest %s", want, digestOf(t, img))
			}
			if n := r.Requests(); n != 0 {
				t.Fatalf("push counted %d requests", n)
			}
			got, err := pull(t, r, "busybox:1.36")
			if err != nil {
				t.Fatalf("pull: %v", err)
			}
			if d := digestOf(t, got); d != want {
				t.Fatalf("pulled %s, want %s", d, want)
			}
			if err := readAll(got); err != nil {
				t.Fatalf("read pulled image: %v", err)
			}
			if r.Requests() == 0 || len(r.RequestLog()) != r.Requests() {
				t.Fatalf("requests = %d, log = %v", r.Requests(), r.RequestLog())
			}

			if tc.opts.TLS {
				if _, err := os.Stat(filepath.Join(r.CertsDir, r.Host, "ca.crt")); err != nil || r.CACertPath == "" {
					t.Fatalf("certs.d layout: %v (CA %q)", err, r.CACertPath)
				}
				// Plain HTTP clients and clients not trusting the CA fail.
				if _, err := pull(t, r, "busybox:1.36", remote.WithTransport(http.DefaultTransport)); err == nil {
					t.Fatalf("pull without the CA succeeded")
				}
			}
			if tc.opts.Username != "" {
				_, err := pull(t, r, "busybox:1.36", remote.WithAuth(&authn.Basic{Username: "alice", Password: "wrong"}))
				if err == nil || !strings.Contains(err.Error(), "401") && !strings.Contains(strings.ToLower(err.Error()), "unauthorized") {
					t.Fatalf("wrong password: %v", err)
				}
				if _, err := pull(t, r, "busybox:1.36", remote.WithAuth(authn.Anonymous)); err == nil {
					t.Fatalf("anonymous pull succeeded")
				}
				challenge := unauthChallenge(t, r)
				if challenge != `Basic realm="berth-test"` {
					t.Fatalf("challenge = %q", challenge)
				}
			}

			// containers/image, as berthd uses it, pulls with the certs.d
			// layout (TLS) or as an insecure registry (plain).
			sys := &types.SystemContext{DockerAuthConfig: &types.DockerAuthConfig{Username: tc.opts.Username, Password: tc.opts.Password}}
			if tc.opts.TLS {
				sys.DockerPerHostCertDirPath = r.CertsDir // the certs.d root
			} else {
				sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
			}
			if tc.opts.Username == "" {
				sys.DockerAuthConfig = nil
			}
			if _, err := copyToDir(t, "docker://"+r.Ref("busybox:1.36"), sys); err != nil {
				t.Fatalf("containers/image pull: %v", err)
			}
		})
	}
}

// unauthChallenge returns the WWW-Authenticate header of an anonymous /v2/.
func unauthChallenge(t *testing.T, r *Registry) string {
	t.Helper()
	scheme := "http"
	if r.CACertPath != "" {
		scheme = "https"
	}
	resp, err := (&http.Client{Transport: r.transport()}).Get(scheme + "://" + r.Host + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous /v2/ = %d", resp.StatusCode)
	}
	return resp.Header.Get("WWW-Authenticate")
}

func firstLayer(t *testing.T, img v1.Image) v1.Layer {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) == 0 {
		t.Fatalf("layers: %v", err)
	}
	return layers[0]
}

func TestCorruptBlobs(t *testing.T) {
	r := StartRegistry(t, RegistryOptions{Handler: CorruptBlobs})
	r.Push(t, "app:v1", BusyboxImage(t, ImageSpec{}))
	img, err := pull(t, r, "app:v1") // the manifest is intact
	if err != nil {
		t.Fatalf("pull manifest: %v", err)
	}
	if _, err := img.RawConfigFile(); err == nil {
		t.Fatalf("corrupted config blob was accepted")
	}
	rc, err := firstLayer(t, img).Compressed()
	if err == nil {
		_, err = io.Copy(io.Discard, rc)
		if cerr := rc.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		t.Fatalf("corrupted layer blob was accepted")
	}
}

func TestStallBlobs(t *testing.T) {
	const stall = 500 * time.Millisecond
	r := StartRegistry(t, RegistryOptions{Handler: StallBlobs(stall)})
	r.Push(t, "app:v1", BusyboxImage(t, ImageSpec{}))
	img, err := pull(t, r, "app:v1")
	if err != nil {
		t.Fatalf("pull manifest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), stall/3)
	defer cancel()
	img, err = pull(t, r, "app:v1", remote.WithContext(ctx))
	if err == nil {
		_, err = img.RawConfigFile()
	}
	if err == nil {
		t.Fatalf("blob fetch within %v succeeded despite the stall", stall/3)
	}
	start := time.Now()
	img, _ = pull(t, r, "app:v1")
	if err := readAll(img); err != nil {
		t.Fatalf("stalled pull failed: %v", err)
	}
	if el := time.Since(start); el < stall {
		t.Fatalf("stalled pull took %v, want >= %v", el, stall)
	}
}

func TestRefuseAllAndFailFirst(t *testing.T) {
	img := BusyboxImage(t, ImageSpec{})
	r := StartRegistry(t, RegistryOptions{Handler: RefuseAll})
	r.Push(t, "app:v1", img) // pushes bypass fault injection
	if _, err := pull(t, r, "app:v1"); err == nil {
		t.Fatalf("pull from RefuseAll registry succeeded")
	}

	r = StartRegistry(t, RegistryOptions{Handler: FailFirst(2)})
	r.Push(t, "app:v1", img)
	var codes []int
	for range 3 {
		resp, err := http.Get("http://" + r.Host + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	if codes[0] != 503 || codes[1] != 503 || codes[2] != 200 {
		t.Fatalf("FailFirst(2) codes = %v", codes)
	}
}

func TestRegistriesConf(t *testing.T) {
	r := StartRegistry(t, RegistryOptions{})
	if got := r.RegistriesConf(); !strings.Contains(got, `location = "`+r.Host+`"`) || !strings.Contains(got, "insecure = true") {
		t.Fatalf("RegistriesConf = %q", got)
	}
}
