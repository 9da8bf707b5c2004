package ops

import (
	"context"
	"fmt"
	"slices"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
)

// KindUpdatePeer sets a member's peer URL through the other members.
const KindUpdatePeer Kind = "update-peer"

// UpdatePeer sets the peer URL of member MemberID (hex), which the
// inventory calls Member, to PeerURL, through the other voting members:
// the member keeps its ID and its data, and its peers reach it at its new
// address from then on.
type UpdatePeer struct {
	Member   string `json:"member"`
	MemberID string `json:"memberID"`
	PeerURL  string `json:"peerURL"`
	Why      string `json:"why,omitempty"`
}

func (UpdatePeer) Kind() Kind   { return KindUpdatePeer }
func (o UpdatePeer) Meta() Meta { return Meta{Why: o.Why} }
func (o UpdatePeer) String() string {
	return fmt.Sprintf("etcd: set the peer URL of member %s (%s) to %s", o.Member, o.MemberID, o.PeerURL)
}

func updatePeer(ctx context.Context, e Env, o UpdatePeer) error {
	list, err := e.Etcd().MemberList(ctx, ClientURLs(e.Cluster()), etcdclient.DefaultCallTimeout)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(list.Members, func(m etcdclient.Member) bool { return m.HexID() == o.MemberID })
	if i < 0 {
		return fmt.Errorf("set the peer URL of %s: the cluster has no member %s", o.Member, o.MemberID)
	}
	var urls []string
	for _, m := range list.Members {
		if !m.Learner && m.HexID() != o.MemberID {
			urls = append(urls, m.ClientURLs...)
		}
	}
	if err := e.Etcd().MemberUpdate(ctx, urls, list.Members[i].ID, []string{o.PeerURL}, etcdclient.DefaultCallTimeout); err != nil {
		return err
	}
	e.Log().Host(o.Member, "member %s now has peer URL %s (was %v)", o.MemberID, o.PeerURL, list.Members[i].PeerURLs)
	return nil
}

// verifyPeer checks that the member list has the member at its new URL.
func verifyPeer(ctx context.Context, e Env, o UpdatePeer) error {
	m, ok, err := memberWithPeer(ctx, e, o.PeerURL)
	switch {
	case err != nil:
		return err
	case !ok || m.HexID() != o.MemberID:
		return fmt.Errorf("the member list has no member %s at %s", o.MemberID, o.PeerURL)
	}
	return nil
}
