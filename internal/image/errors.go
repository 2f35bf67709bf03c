package image

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"

	"github.com/docker/distribution/registry/api/errcode"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/signature"
	"go.podman.io/storage"

	"github.com/berth-cri/berth/internal/errdefs"
)

// kinded attaches an errdefs kind to an error without changing its
// message, so that the CRI layer picks the right code while the operator
// reads the library's own explanation.
type kinded struct {
	err, kind error
}

func (e *kinded) Error() string   { return e.err.Error() }
func (e *kinded) Unwrap() []error { return []error{e.kind, e.err} }

// withKind returns err marked with the errdefs kind classify finds.
func withKind(err error) error {
	if err == nil {
		return nil
	}
	if kind := classify(err); kind != nil && !errors.Is(err, kind) {
		return &kinded{err: err, kind: kind}
	}
	return err
}

// classify maps the errors of containers/image and containers/storage
// (and the network below them) to errdefs kinds; nil when none fits.
func classify(err error) error {
	var (
		policy  signature.PolicyRequirementError
		unauth  docker.ErrUnauthorizedForCredentials
		status  docker.UnexpectedHTTPStatusError
		ecode   errcode.Error
		netErr  net.Error
		dnsErr  *net.DNSError
		unknown x509.UnknownAuthorityError
		invalid x509.CertificateInvalidError
		host    x509.HostnameError
	)
	switch {
	case errors.As(err, &policy):
		return errdefs.ErrFailedPrecondition
	case errors.As(err, &unauth):
		return errdefs.ErrUnauthenticated
	case errors.As(err, &ecode) || errors.As(err, &ecode.Code):
		switch ecode.Code.Descriptor().Value {
		case "UNAUTHORIZED":
			return errdefs.ErrUnauthenticated
		case "DENIED":
			return errdefs.ErrPermissionDenied
		case "MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN":
			return errdefs.ErrNotFound
		case "TOOMANYREQUESTS", "UNAVAILABLE":
			return errdefs.ErrUnavailable
		}
	case errors.As(err, &status):
		switch c := status.StatusCode; {
		case c == http.StatusUnauthorized:
			return errdefs.ErrUnauthenticated
		case c == http.StatusForbidden:
			return errdefs.ErrPermissionDenied
		case c == http.StatusNotFound:
			return errdefs.ErrNotFound
		case c == http.StatusTooManyRequests || c >= 500:
			return errdefs.ErrUnavailable
		}
	case errors.Is(err, docker.ErrTooManyRequests):
		return errdefs.ErrUnavailable
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return errdefs.ErrResourceExhausted
	case errors.Is(err, storage.ErrImageUnknown), errors.Is(err, storage.ErrLayerUnknown):
		return errdefs.ErrNotFound
	case errors.Is(err, storage.ErrImageUsedByContainer):
		return errdefs.ErrFailedPrecondition
	case errors.As(err, &unknown), errors.As(err, &invalid), errors.As(err, &host):
		// The node does not trust the registry: a certs.d or CA setup
		// problem, not something a retry fixes.
		return errdefs.ErrFailedPrecondition
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.As(err, &dnsErr):
		return errdefs.ErrUnavailable
	case errors.As(err, &netErr) && netErr.Timeout():
		return errdefs.ErrUnavailable
	}
	return nil
}

// wrapStorageErr wraps a storage error with what was being done and its
// kind.
func wrapStorageErr(what string, err error) error {
	return withKind(fmt.Errorf("%s: %w", what, err))
}

func isNotFound(err error) bool { return errors.Is(err, errdefs.ErrNotFound) }
