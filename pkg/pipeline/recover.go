package pipeline

import (
	"context"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/gather"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
)

// RecheckAfter is how long a recovery waits before it reads etcd's view a
// second time: an election in progress also has no leader for a moment.
const RecheckAfter = 2 * time.Second

// Recover brings back a cluster that lost quorum for good from one
// member's data, from's or by default that of the member with the highest
// raft index (see plan.Recover).
func Recover(ctx context.Context, s *Session, from string, o ConvergeOptions, h Hooks) (*Outcome, error) {
	return Change(ctx, s, func(in plan.Input) (*plan.Plan, error) {
		in.Etcd = s.recheckQuorum(ctx, in)
		return plan.Recover(in, from)
	}, o, h)
}

// recheckQuorum reads etcd's view again, a moment after a first read that
// found no quorum, and returns the second: the plan refuses a recovery
// when either shows quorum. The view of a run that goes on with a
// recovery already started is read again too, which costs a moment.
func (s *Session) recheckQuorum(ctx context.Context, in plan.Input) *facts.Cluster {
	if in.Etcd == nil || in.Etcd.HasQuorum() {
		return in.Etcd
	}
	select {
	case <-ctx.Done():
		return in.Etcd
	case <-time.After(RecheckAfter):
	}
	return gather.Etcd(ctx, s.Cluster, &gather.Facts{Hosts: in.Hosts}, s.Etcd, s.opts.EtcdTimeout)
}
