package pipeline

import (
	"context"

	"github.com/etcdadm-io/etcdadm/pkg/plan"
)

// Recover brings back a cluster that lost quorum for good from one
// member's data, from's or by default that of the member with the highest
// raft index (see plan.Recover). The facts confirm the loss: no member
// names a leader in two reads a few seconds apart.
func Recover(ctx context.Context, s *Session, from string, o ConvergeOptions, h Hooks) (*Outcome, error) {
	return Change(ctx, s, func(in plan.Input) (*plan.Plan, error) {
		return plan.Recover(in, from)
	}, o, h)
}
