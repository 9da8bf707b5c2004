package ops

import (
	"context"
	"fmt"

	"github.com/etcdadm-io/etcdadm/internal/shell"
)

// KindUnmark removes a pending work record once the work is done.
const KindUnmark Kind = "unmark"

// Unmark removes the record of the pending work Marker.
type Unmark struct {
	Marker string `json:"marker"`
	Why    string `json:"why,omitempty"`
}

func (Unmark) Kind() Kind       { return KindUnmark }
func (o Unmark) Meta() Meta     { return Meta{Why: o.Why} }
func (o Unmark) String() string { return fmt.Sprintf("clear pending %s", o.Marker) }

func unmark(ctx context.Context, e Env, o Unmark) error {
	if _, err := e.Transport().Run(ctx, "rm -f "+shell.Quote(MarkerPath(e.StateDir(), o.Marker)), nil); err != nil {
		return fmt.Errorf("clear pending %s: %w", o.Marker, err)
	}
	return nil
}
