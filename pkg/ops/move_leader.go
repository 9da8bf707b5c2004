package ops

import (
	"context"
	"fmt"
)

// KindMoveLeader hands leadership to another healthy voter first.
const KindMoveLeader Kind = "move-leader"

// MoveLeader hands leadership away from member MemberID (hex), which the
// inventory calls Member, when it leads.
type MoveLeader struct {
	Member   string `json:"member"`
	MemberID string `json:"memberID"`
	// ClientURL, when set, is the member's client URL where the inventory
	// gives another (a member that moves).
	ClientURL string `json:"clientURL,omitempty"`
	Why       string `json:"why,omitempty"`
}

func (MoveLeader) Kind() Kind   { return KindMoveLeader }
func (o MoveLeader) Meta() Meta { return Meta{Why: o.Why} }
func (o MoveLeader) String() string {
	return fmt.Sprintf("etcd: move leadership away from %s", o.Member)
}

func moveLeader(ctx context.Context, e Env, o MoveLeader) error {
	urls := ClientURLs(e.Cluster())
	if o.ClientURL != "" {
		urls = append(urls, o.ClientURL)
	}
	if err := e.Etcd().MoveLeaderAway(ctx, urls, o.MemberID); err != nil {
		return err
	}
	e.Log().Host(o.Member, "leadership moved to another member")
	return nil
}
