//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package remote

import (
	"context"

	"golang.org/x/term"
)

// readSecret reads a line without echo. Here the terminal's modes are
// term.ReadPassword's to set and restore: a cancelled question returns at
// once, and echo comes back when its read ends.
func (t *Terminal) readSecret(ctx context.Context) ([]byte, error) {
	return t.await(ctx, func() ([]byte, error) { return term.ReadPassword(int(t.in.Fd())) })
}
