package ops

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
)

// KindPromote makes a learner that caught up a voting member.
const KindPromote Kind = "promote"

// Promote makes the learner at PeerURL a voting member once it caught up.
type Promote struct {
	Member  string `json:"member"`
	PeerURL string `json:"peerURL"`
	Why     string `json:"why,omitempty"`
}

func (Promote) Kind() Kind   { return KindPromote }
func (o Promote) Meta() Meta { return Meta{Why: o.Why} }
func (o Promote) String() string {
	return fmt.Sprintf("etcd: promote %s once it caught up", o.Member)
}

func promote(ctx context.Context, e Env, o Promote) error {
	urls, members, err := voters(ctx, e, o.PeerURL)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(members, func(m etcdclient.Member) bool { return m.HasPeerURL(o.PeerURL) })
	if i < 0 {
		return fmt.Errorf("promote %s: no member has peer URL %s", o.Member, o.PeerURL)
	}
	start := time.Now()
	if err := e.Etcd().Promote(ctx, urls, members[i].ID, e.PromoteTimeout()); err != nil {
		return err
	}
	e.Log().Host(o.Member, "promoted to voting member %s (%s after it caught up)", members[i].HexID(), time.Since(start).Round(time.Millisecond))
	return nil
}

// verifyVoter checks that the member at the peer URL votes.
func verifyVoter(ctx context.Context, e Env, o Promote) error {
	m, ok, err := memberWithPeer(ctx, e, o.PeerURL)
	switch {
	case err != nil:
		return err
	case !ok:
		return fmt.Errorf("the member list has no member at %s", o.PeerURL)
	case m.Learner:
		return fmt.Errorf("member %s is still a learner", m.HexID())
	}
	return nil
}
