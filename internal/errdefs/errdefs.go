// Package errdefs holds the error kinds that service packages wrap, so the
// CRI layer can map any error to the right gRPC code with errors.Is and
// the services stay free of gRPC.
package errdefs

import "errors"

// Kinds of failure. Wrap them: fmt.Errorf("pod %s: %w", id, errdefs.ErrNotFound).
var (
	ErrNotFound           = errors.New("not found")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrAlreadyExists      = errors.New("already exists")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrUnavailable        = errors.New("unavailable")
	ErrDeadlineExceeded   = errors.New("deadline exceeded")
	ErrPermissionDenied   = errors.New("permission denied")
	ErrUnauthenticated    = errors.New("unauthenticated")
	ErrResourceExhausted  = errors.New("resource exhausted")
)
