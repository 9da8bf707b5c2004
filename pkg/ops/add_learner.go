package ops

import (
	"context"
	"fmt"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
)

// KindAddLearner adds a member as a learner through a voting member.
const KindAddLearner Kind = "add-learner"

// AddLearner adds Member, at PeerURL, to the cluster as a learner.
type AddLearner struct {
	Member  string `json:"member"`
	PeerURL string `json:"peerURL"`
	Why     string `json:"why,omitempty"`
}

func (AddLearner) Kind() Kind   { return KindAddLearner }
func (o AddLearner) Meta() Meta { return Meta{Why: o.Why} }
func (o AddLearner) String() string {
	return fmt.Sprintf("etcd: add %s (%s) as a learner", o.Member, o.PeerURL)
}

func addLearner(ctx context.Context, e Env, o AddLearner) error {
	urls, _, err := voters(ctx, e, o.PeerURL)
	if err != nil {
		return err
	}
	m, _, err := e.Etcd().AddLearner(ctx, urls, o.PeerURL, etcdclient.DefaultCallTimeout, time.Minute)
	if err != nil {
		return err
	}
	e.Log().Host(o.Member, "added to etcd as learner %s", m.HexID())
	return nil
}

// verifyLearner checks that the cluster lists the member at its peer URL.
func verifyLearner(ctx context.Context, e Env, o AddLearner) error {
	_, ok, err := memberWithPeer(ctx, e, o.PeerURL)
	if err == nil && !ok {
		err = fmt.Errorf("the member list has no member at %s", o.PeerURL)
	}
	return err
}
