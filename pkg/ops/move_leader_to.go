package ops

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
)

// KindMoveLeaderTo hands leadership to a named member.
const KindMoveLeaderTo Kind = "move-leader-to"

// MoveLeaderTo hands leadership to member MemberID (hex), which the
// inventory calls Member; the leader is the one From names at planning,
// whoever leads when it runs. A member that leads already is a success.
type MoveLeaderTo struct {
	Member   string `json:"member"`
	MemberID string `json:"memberID"`
	From     string `json:"from,omitempty"`
	Why      string `json:"why,omitempty"`
}

func (MoveLeaderTo) Kind() Kind   { return KindMoveLeaderTo }
func (o MoveLeaderTo) Meta() Meta { return Meta{Why: o.Why} }
func (o MoveLeaderTo) String() string {
	if o.From != "" {
		return fmt.Sprintf("etcd: move leadership from %s to %s", o.From, o.Member)
	}
	return fmt.Sprintf("etcd: move leadership to %s", o.Member)
}

func moveLeaderTo(ctx context.Context, e Env, o MoveLeaderTo) error {
	id, err := strconv.ParseUint(o.MemberID, 16, 64)
	if err != nil {
		return fmt.Errorf("move leadership to %s: member ID %q: %w", o.Member, o.MemberID, err)
	}
	start := time.Now()
	if err := e.Etcd().MoveLeader(ctx, ClientURLs(e.Cluster()), id, 10*time.Second); err != nil {
		return err
	}
	e.Log().Host(o.Member, "leads now (leadership moved in %s)", time.Since(start).Round(time.Millisecond))
	return nil
}

// verifyLeads checks that the member leads, as the members see it.
func verifyLeads(ctx context.Context, e Env, o MoveLeaderTo) error {
	for _, st := range e.Etcd().Status(ctx, Endpoints(e.Cluster()), etcdclient.DefaultCallTimeout) {
		if st.Leader && st.Healthy {
			if st.ID != o.MemberID {
				return fmt.Errorf("%s (%s) leads, not %s", st.Name, st.ID, o.Member)
			}
			return nil
		}
	}
	return fmt.Errorf("no healthy member leads after leadership moved to %s", o.Member)
}
