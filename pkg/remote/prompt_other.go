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
	if t.pending == nil {
		ch := make(chan lineRead, 1)
		go func() {
			line, err := term.ReadPassword(int(t.in.Fd()))
			ch <- lineRead{line, err}
		}()
		t.pending = ch
	}
	select {
	case r := <-t.pending:
		t.pending = nil
		return r.line, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
