package image

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/signature"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/tracing"
)

// Auth is the credentials of one pull, as the CRI's AuthConfig carries
// them. The zero value means: use global_auth_file.
type Auth struct {
	Username, Password string
	// Auth is base64("username:password"), the docker config form.
	Auth string
	// IdentityToken is an OAuth2 refresh token for the registry.
	IdentityToken string
	// RegistryToken is a bearer token sent to the registry as is.
	RegistryToken string
}

func (a *Auth) empty() bool { return a == nil || *a == Auth{} }

// key identifies the credentials in the deduplication key without
// keeping them in clear.
func (a *Auth) key() string {
	if a.empty() {
		return ""
	}
	h := sha256.Sum256([]byte(a.Username + "\x00" + a.Password + "\x00" + a.Auth + "\x00" + a.IdentityToken + "\x00" + a.RegistryToken))
	return hex.EncodeToString(h[:8])
}

// apply puts the credentials into sys; per-request credentials replace
// the auth file.
func (a *Auth) apply(sys *types.SystemContext) error {
	if a.empty() {
		return nil
	}
	user, pass := a.Username, a.Password
	if a.Auth != "" && user == "" {
		raw, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return fmt.Errorf("auth config: auth is not base64: %w", errdefs.ErrInvalidArgument)
		}
		var ok bool
		if user, pass, ok = strings.Cut(string(raw), ":"); !ok {
			return fmt.Errorf("auth config: auth is not base64(user:password): %w", errdefs.ErrInvalidArgument)
		}
	}
	if user != "" || a.IdentityToken != "" {
		sys.DockerAuthConfig = &types.DockerAuthConfig{Username: user, Password: pass, IdentityToken: a.IdentityToken}
	}
	sys.DockerBearerRegistryToken = a.RegistryToken
	return nil
}

// errNoWaiters cancels a shared pull whose every caller has gone.
var errNoWaiters = errors.New("every caller of the pull went away")

// Pull pulls name (short or fully qualified, tag or digest) into storage
// and returns the image ID. Concurrent pulls of the same name with the
// same credentials share one download; each caller's ctx bounds only its
// own wait, and the download stops when no caller is left.
func (s *Service) Pull(ctx context.Context, name string, auth *Auth) (_ string, err error) {
	ctx, span := tracing.Start(ctx, "image pull", attribute.String("image.name", name))
	defer func() { tracing.End(span, err) }()
	name = trimTransport(name)
	if err := checkName(name); err != nil {
		// It names the image and what is wrong with it.
		return "", err
	}
	if _, ok := fullID(name); ok {
		// "sha256:<hex>" parses as repository "sha256" with a tag, but
		// it is an image ID, which no registry can be asked for.
		return "", fmt.Errorf("pull image %s: an image ID cannot be pulled, a name is needed: %w", name, errdefs.ErrInvalidArgument)
	}
	f, joined := s.pulls.join(name+"\x00"+auth.key(), func(ctx context.Context) (string, error) {
		return s.pull(ctx, name, auth)
	})
	if joined {
		s.log.Info("pull: joining the pull already in progress", "image", name)
	}
	return s.pulls.wait(ctx, f, name)
}

// flightGroup runs one pull per key at a time. Unlike singleflight, the
// pull runs detached from the first caller's context: it is cancelled
// only when every caller waiting on it has gone.
type flightGroup struct {
	mu      sync.Mutex
	flights map[string]*flight
	// running counts pulls still in progress, including cancelled ones
	// winding down, so that Close can wait for them.
	running sync.WaitGroup
}

// errClosing cancels the pulls still running when the service closes.
var errClosing = errors.New("the image service is shutting down")

type flight struct {
	key     string
	done    chan struct{}
	id      string
	err     error
	waiters int
	cancel  context.CancelCauseFunc
}

func (g *flightGroup) join(key string, run func(context.Context) (string, error)) (*flight, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.flights[key]; ok {
		f.waiters++
		return f, true
	}
	if g.flights == nil {
		g.flights = map[string]*flight{}
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	f := &flight{key: key, done: make(chan struct{}), waiters: 1, cancel: cancel}
	g.flights[key] = f
	g.running.Add(1)
	go func() {
		defer g.running.Done()
		f.id, f.err = run(ctx)
		cancel(nil)
		g.mu.Lock()
		if g.flights[key] == f {
			delete(g.flights, key)
		}
		g.mu.Unlock()
		close(f.done)
	}()
	return f, false
}

// stop cancels every pull and waits until they have all returned.
func (g *flightGroup) stop() {
	g.mu.Lock()
	for _, f := range g.flights {
		f.cancel(errClosing)
	}
	g.mu.Unlock()
	g.running.Wait()
}

func (g *flightGroup) wait(ctx context.Context, f *flight, name string) (string, error) {
	select {
	case <-f.done:
		return f.id, f.err
	case <-ctx.Done():
		g.mu.Lock()
		f.waiters--
		if f.waiters == 0 {
			// Later callers start afresh instead of joining a pull
			// that is being cancelled.
			if g.flights[f.key] == f {
				delete(g.flights, f.key)
			}
			f.cancel(errNoWaiters)
		}
		g.mu.Unlock()
		return "", fmt.Errorf("pull image %s: %w", name, ctx.Err())
	}
}

// pull resolves name to its candidates and pulls the first that works.
func (s *Service) pull(ctx context.Context, name string, auth *Auth) (string, error) {
	cfg := s.config()
	store, err := s.Store()
	if err != nil {
		return "", fmt.Errorf("pull image %s: %w", name, err)
	}
	sys := s.systemContext(cfg)
	if err := auth.apply(sys); err != nil {
		return "", fmt.Errorf("pull image %s: %w", name, err)
	}
	candidates, err := pullCandidates(sys, name, cfg.Berth.Image.ShortNameMode)
	if err != nil {
		return "", fmt.Errorf("pull image %s: %w", name, err)
	}
	policy, err := policyContext(cfg.Berth.Image.SignaturePolicy)
	if err != nil {
		return "", fmt.Errorf("pull image %s: %w", name, err)
	}
	defer policy.Destroy()

	var errs []error
	for _, c := range candidates {
		id, err := s.pullOne(ctx, store, sys, cfg, policy, c)
		if err == nil {
			return id, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil || errors.Is(err, errdefs.ErrDeadlineExceeded) {
			break
		}
	}
	if len(errs) == 1 {
		return "", errs[0]
	}
	// Several candidates of a short name failed: report them all, and
	// let the last one decide the code.
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return "", &kinded{
		err:  fmt.Errorf("pull image %s: every candidate failed: %s", name, strings.Join(msgs, "; ")),
		kind: kindOf(errs[len(errs)-1]),
	}
}

// kindOf returns the errdefs kind err carries, or a generic one.
func kindOf(err error) error {
	for _, k := range []error{
		errdefs.ErrNotFound, errdefs.ErrInvalidArgument, errdefs.ErrFailedPrecondition,
		errdefs.ErrUnavailable, errdefs.ErrDeadlineExceeded, errdefs.ErrPermissionDenied,
		errdefs.ErrUnauthenticated, errdefs.ErrResourceExhausted, context.Canceled,
	} {
		if errors.Is(err, k) {
			return k
		}
	}
	return errors.New("pull failed")
}

// policyContext loads the signature policy afresh: a SIGHUP must not be
// needed for an edited policy.json, and loading is cheap.
func policyContext(path string) (*signature.PolicyContext, error) {
	policy, err := signature.NewPolicyFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("load signature policy: %v: %w", err, errdefs.ErrFailedPrecondition)
	}
	pc, err := signature.NewPolicyContext(policy)
	if err != nil {
		return nil, fmt.Errorf("signature policy %s: %v: %w", path, err, errdefs.ErrFailedPrecondition)
	}
	return pc, nil
}

// pullOne copies one fully qualified image from its registry (after
// registries.conf rewrites and mirrors, which containers/image applies)
// into storage.
func (s *Service) pullOne(ctx context.Context, store storage.Store, sys *types.SystemContext, cfg *config.Config, policy *signature.PolicyContext, named reference.Named) (id string, err error) {
	ref := named.String()
	wrap := func(err error) error { return withKind(fmt.Errorf("pull image %s: %w", ref, err)) }

	reg, err := sysregistriesv2.FindRegistry(sys, ref)
	if err != nil {
		return "", wrap(fmt.Errorf("read registries.conf: %v: %w", err, errdefs.ErrFailedPrecondition))
	}
	if reg != nil && reg.Blocked {
		return "", wrap(fmt.Errorf("registry %s is blocked in registries.conf: %w", reg.Prefix, errdefs.ErrFailedPrecondition))
	}
	if insecure(cfg.Berth.Image.InsecureRegistries, named, reg) {
		c := *sys
		c.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
		sys = &c
	}
	src, err := docker.NewReference(named)
	if err != nil {
		return "", wrap(fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument))
	}
	dst, err := istorage.Transport.NewStoreReference(store, named, "")
	if err != nil {
		return "", wrap(err)
	}

	before := s.janitor.begin(store)
	defer func() { s.janitor.end(store, before, err != nil, s.log) }()

	timeout := cfg.Berth.Image.PullProgressTimeout.Duration
	watch := newProgress(ctx, s.log, s.observer, ref, timeout)
	defer watch.release()
	start := time.Now()
	s.log.Info("pulling image", "image", ref)
	var resolved types.ImageReference
	_, err = copy.Image(watch.ctx, policy, dst, src, &copy.Options{
		SourceCtx:               sys,
		DestinationCtx:          sys,
		Progress:                watch.events,
		ProgressInterval:        watch.interval,
		ReportResolvedReference: &resolved,
	})
	stats := watch.stop()
	if err != nil {
		switch cause := context.Cause(watch.ctx); {
		case errors.Is(cause, errNoProgress):
			return "", wrap(fmt.Errorf("no progress for %s (pull_progress_timeout), aborted: %w", timeout, errdefs.ErrDeadlineExceeded))
		case errors.Is(cause, errNoWaiters), errors.Is(cause, errClosing):
			return "", wrap(fmt.Errorf("cancelled: %w: %w", cause, context.Canceled))
		}
		var policyErr signature.PolicyRequirementError
		if errors.As(err, &policyErr) {
			return "", wrap(fmt.Errorf("rejected by signature policy %s: %w", cfg.Berth.Image.SignaturePolicy, err))
		}
		if errors.Is(classify(err), errdefs.ErrUnauthenticated) {
			return "", wrap(fmt.Errorf("the registry refused the credentials (wrong, or none given): %w", err))
		}
		return "", wrap(err)
	}
	if resolved == nil {
		resolved = dst
	}
	_, img, err := istorage.ResolveReference(resolved)
	if err != nil {
		return "", wrap(fmt.Errorf("find pulled image: %w", err))
	}
	s.log.Info("pulled image", "image", ref, "id", img.ID, "bytes", stats.bytes, "layers", stats.layers,
		"reused", stats.skipped, "duration", time.Since(start).Round(time.Millisecond))
	return img.ID, nil
}

// insecure reports whether insecure_registries names the registry of
// named or one of the locations registries.conf sends it to. Entries are
// hosts ("reg:5000"), location prefixes ("reg:5000/ns") or CIDRs
// ("10.0.0.0/8"), as in CRI-O.
func insecure(entries []string, named reference.Named, reg *sysregistriesv2.Registry) bool {
	if len(entries) == 0 {
		return false
	}
	locations := []string{named.Name()}
	if reg != nil {
		if sources, err := reg.PullSourcesFromReference(named); err == nil {
			for _, src := range sources {
				locations = append(locations, src.Reference.Name())
			}
		}
	}
	for _, loc := range locations {
		host, _, _ := strings.Cut(loc, "/")
		hostname := host
		if h, _, err := net.SplitHostPort(host); err == nil {
			hostname = h
		}
		for _, e := range entries {
			if e == host || e == hostname || strings.HasPrefix(loc, strings.TrimSuffix(e, "/")+"/") {
				return true
			}
			if _, cidr, err := net.ParseCIDR(e); err == nil {
				if ip := net.ParseIP(hostname); ip != nil && cidr.Contains(ip) {
					return true
				}
			}
		}
	}
	return false
}
