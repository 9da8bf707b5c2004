package ops

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/snapshot"
)

// KindRestoreData makes, on this machine, every member's data directory
// from a snapshot.
const KindRestoreData Kind = "restore-data"

// RestoreData makes, under Dir on this machine, a data directory per
// member from Snapshot, with etcd's own restore code: that member's name
// and peer URL, the whole initial cluster, the new cluster Token, and the
// revision bumped and marked compacted. Make, when set, names the only
// members whose directory is made (the others have theirs already).
type RestoreData struct {
	Snapshot string                   `json:"snapshot"`
	Dir      string                   `json:"dir"`
	Members  []snapshot.RestoreMember `json:"members"`
	Make     []string                 `json:"make,omitempty"`
	Token    string                   `json:"token"`
	Why      string                   `json:"why,omitempty"`
}

func (RestoreData) Kind() Kind   { return KindRestoreData }
func (o RestoreData) Meta() Meta { return Meta{Why: o.Why} }
func (o RestoreData) String() string {
	if len(o.Make) > 0 {
		return fmt.Sprintf("make the data directories of %s from %s under %s (cluster token %s)", strings.Join(o.Make, ", "), o.Snapshot, o.Dir, o.Token)
	}
	return fmt.Sprintf("make %d data directories from %s under %s (cluster token %s)", len(o.Members), o.Snapshot, o.Dir, o.Token)
}

func (o RestoreData) count() int {
	if len(o.Make) > 0 {
		return len(o.Make)
	}
	return len(o.Members)
}

func restoreData(_ context.Context, e Env, o RestoreData) error {
	start := time.Now()
	if err := snapshot.Prepare(o.Snapshot, o.Dir, o.Members, o.Token, o.Make...); err != nil {
		return err
	}
	e.Log().Printf("made %d data directories from the snapshot in %s (cluster token %s)", o.count(), time.Since(start).Round(time.Millisecond), o.Token)
	return nil
}
