package ops

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
)

// KindDefragment rewrites one member's database, giving back its free pages.
const KindDefragment Kind = "defragment"

// Defragment rewrites the database of Member, which must not lead: while
// it runs the member applies nothing and holds the requests sent to it,
// and every proposal and lease renewal goes through the leader. Then it
// waits for the member healthy and caught up.
type Defragment struct {
	Member string `json:"member"`
	// Alone is set for the only member of a cluster, which leads and has
	// nobody to hand its leadership to.
	Alone bool   `json:"alone,omitempty"`
	Why   string `json:"why,omitempty"`
}

func (Defragment) Kind() Kind { return KindDefragment }

// Meta says the member is out while its database is rewritten: the
// executor checks, before it, that the others keep quorum. A cluster's
// only member has no others.
func (o Defragment) Meta() Meta { return Meta{Why: o.Why, Disruptive: !o.Alone} }
func (o Defragment) String() string {
	return fmt.Sprintf("etcd: defragment %s's database, then wait for it healthy and caught up", o.Member)
}

func defragment(ctx context.Context, e Env, o Defragment) error {
	i := slices.IndexFunc(Endpoints(e.Cluster()), func(ep etcdclient.Endpoint) bool { return ep.Name == o.Member })
	if i < 0 {
		return fmt.Errorf("defragment %s: not a host of the inventory", o.Member)
	}
	me := Endpoints(e.Cluster())[i]
	before := e.Etcd().Status(ctx, []etcdclient.Endpoint{me}, etcdclient.DefaultCallTimeout)[0]
	switch {
	case !before.Healthy:
		return fmt.Errorf("%s is not healthy (%s): not defragmented", o.Member, before.Error)
	case before.Leader && !o.Alone:
		// Leadership moved to it after the plan was made.
		return fmt.Errorf("%s leads now, and the cluster's proposals and lease renewals go through its leader: not defragmented; run `etcdadm defrag` again, which defragments the leader last, after handing its leadership over", o.Member)
	}
	log := e.Log()
	log.Host(o.Member, "defragmenting its database: %s, of which %s in use", Bytes(before.DBSize), Bytes(before.DBSizeInUse))
	start := time.Now()
	if err := e.Etcd().Defragment(ctx, me.ClientURL, e.HealthTimeout()); err != nil {
		return err
	}
	took := time.Since(start).Round(time.Millisecond)
	if err := AwaitMember(ctx, e, false, "", nil); err != nil {
		return err
	}
	after := e.Etcd().Status(ctx, []etcdclient.Endpoint{me}, etcdclient.DefaultCallTimeout)[0]
	log.Host(o.Member, "defragmented in %s: database %s before, %s after", took, Bytes(before.DBSize), Bytes(after.DBSize))
	return nil
}
