package ops

import (
	"context"
	"fmt"
	"path"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// KindMark records pending work on the host before it starts.
const KindMark Kind = "mark"

// Mark records the pending work Marker under the host's state directory;
// the facts of a later run read it, so that a cut run's work is finished.
type Mark struct {
	Marker string `json:"marker"`
	Why    string `json:"why,omitempty"`
}

func (Mark) Kind() Kind       { return KindMark }
func (o Mark) Meta() Meta     { return Meta{Why: o.Why} }
func (o Mark) String() string { return fmt.Sprintf("record pending %s", o.Marker) }

// MarkerPath is where the pending work marker lives on a host.
func MarkerPath(stateDir, marker string) string { return path.Join(stateDir, "pending", marker) }

func mark(ctx context.Context, e Env, o Mark) error {
	data := fmt.Sprintf("recorded by etcdadm at %s: %s\n", time.Now().UTC().Format(time.RFC3339), o.Why)
	if _, err := e.Transport().WriteFile(ctx, remote.File{Path: MarkerPath(e.StateDir(), o.Marker), Mode: 0o600, DirMode: 0o700, Data: []byte(data)}, ""); err != nil {
		return fmt.Errorf("record pending %s: %w", o.Marker, err)
	}
	return nil
}
