package ops

import (
	"context"
	"fmt"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
)

// KindRemoveMember removes a member by ID through another member.
const KindRemoveMember Kind = "remove-member"

// RemoveMember removes member MemberID (hex), which the inventory calls
// Member, through the other voting members.
type RemoveMember struct {
	Member   string `json:"member"`
	MemberID string `json:"memberID"`
	Why      string `json:"why,omitempty"`
}

func (RemoveMember) Kind() Kind   { return KindRemoveMember }
func (o RemoveMember) Meta() Meta { return Meta{Why: o.Why} }
func (o RemoveMember) String() string {
	return fmt.Sprintf("etcd: remove member %s (%s)", o.Member, o.MemberID)
}

func removeMember(ctx context.Context, e Env, o RemoveMember) error {
	list, err := e.Etcd().MemberList(ctx, ClientURLs(e.Cluster()), etcdclient.DefaultCallTimeout)
	if err != nil {
		return err
	}
	var id uint64
	var urls []string
	for _, m := range list.Members {
		if m.HexID() == o.MemberID {
			id = m.ID
			continue
		}
		if !m.Learner {
			urls = append(urls, m.ClientURLs...)
		}
	}
	if id == 0 {
		e.Log().Host(o.Member, "member %s is not in the cluster any more", o.MemberID)
		return nil
	}
	if err := e.Etcd().Remove(ctx, urls, id, time.Minute); err != nil {
		return err
	}
	e.Log().Host(o.Member, "removed member %s from the cluster", o.MemberID)
	return nil
}

// verifyRemoved checks that the member list no longer has the member.
func verifyRemoved(ctx context.Context, e Env, o RemoveMember) error {
	list, err := e.Etcd().MemberList(ctx, ClientURLs(e.Cluster()), etcdclient.DefaultCallTimeout)
	if err != nil {
		return err
	}
	for _, m := range list.Members {
		if m.HexID() == o.MemberID {
			return fmt.Errorf("member %s is still listed", o.MemberID)
		}
	}
	return nil
}
