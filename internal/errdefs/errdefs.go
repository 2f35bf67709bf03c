// Package errdefs holds the error kinds that service packages wrap, so the
// CRI layer can map any error to the right gRPC code with errors.Is and
// the services stay free of gRPC.
package errdefs

import (
	"errors"
	"strings"
)

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

// gluedKinds are the kinds whose words only repeat the gRPC code when
// wrapping leaves them at the end of a sentence ("container x is
// running: failed precondition"). ErrNotFound is not among them: its
// words are often the whole predicate ("container x: not found"). The
// rest are never glued on as text, and their words are also the text of
// system errors (EACCES is "permission denied").
var gluedKinds = []error{ErrInvalidArgument, ErrFailedPrecondition, ErrAlreadyExists, ErrUnavailable, ErrDeadlineExceeded}

// Message is err's text for the people who read it: without the kind
// that wrapping glued on at its end (": failed precondition",
// " (invalid argument)"), which the gRPC code already carries.
func Message(err error) string {
	msg := err.Error()
	for _, kind := range gluedKinds {
		if !errors.Is(err, kind) {
			continue
		}
		for _, glue := range []string{": " + kind.Error(), " (" + kind.Error() + ")"} {
			if trimmed, ok := strings.CutSuffix(msg, glue); ok && trimmed != "" {
				return trimmed
			}
		}
	}
	return msg
}
