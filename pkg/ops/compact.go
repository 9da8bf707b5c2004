package ops

import (
	"context"
	"fmt"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
)

// KindCompact discards the keyspace's history up to the current revision.
const KindCompact Kind = "compact"

// Compact discards the history of every key up to the cluster's revision
// when it runs (not when it was planned), and waits until the member that
// took it removed the old revisions from its database: what a defragment
// then gives back.
type Compact struct {
	Why string `json:"why,omitempty"`
}

func (Compact) Kind() Kind     { return KindCompact }
func (o Compact) Meta() Meta   { return Meta{Why: o.Why} }
func (Compact) String() string { return "etcd: compact the history up to the current revision" }

func compact(ctx context.Context, e Env, _ Compact) error {
	urls := ClientURLs(e.Cluster())
	rev, err := e.Etcd().Revision(ctx, urls, etcdclient.DefaultCallTimeout)
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	start := time.Now()
	if err := e.Etcd().Compact(ctx, urls, rev, true, e.HealthTimeout()); err != nil {
		return err
	}
	e.Log().Printf("compacted the history up to revision %d in %s", rev, time.Since(start).Round(time.Millisecond))
	return nil
}
