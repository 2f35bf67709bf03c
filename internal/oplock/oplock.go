// Package oplock is the operation lock of one pod or container: it lets
// one lifecycle operation on the object run at a time, and a waiter gives
// up when its request's deadline passes.
package oplock

import (
	"context"
	"fmt"
)

// Lock is an operation lock; make it with New.
type Lock chan struct{}

// New returns an unlocked Lock.
func New() Lock { return make(Lock, 1) }

// Lock takes l, or gives up when ctx ends; what names the object in the
// error ("container <id>").
func (l Lock) Lock(ctx context.Context, what string) error {
	select {
	case l <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for another operation on %s: %w", what, ctx.Err())
	}
}

// Unlock releases l.
func (l Lock) Unlock() { <-l }
