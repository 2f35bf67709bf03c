package errdefs

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
)

func TestMessage(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("container c1 is running: stop it first: %w", ErrFailedPrecondition), "container c1 is running: stop it first"},
		{fmt.Errorf("create container: %w", fmt.Errorf("bad name %q: %w", "x", ErrInvalidArgument)), `create container: bad name "x"`},
		{fmt.Errorf("mkdir /v: %w (%w)", syscall.EINVAL, ErrInvalidArgument), "mkdir /v: invalid argument"},
		// The predicate of a lookup stays.
		{fmt.Errorf("container %q: %w", "c1", ErrNotFound), `container "c1": not found`},
		// A system error's words are not a kind's.
		{fmt.Errorf("write /proc/sys/x: %w", syscall.EINVAL), "write /proc/sys/x: invalid argument"},
		{fmt.Errorf("open /x: %w", syscall.EACCES), "open /x: permission denied"},
		{ErrFailedPrecondition, "failed precondition"},
		{errors.New("plain"), "plain"},
	} {
		if got := Message(tc.err); got != tc.want {
			t.Errorf("Message(%q) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
