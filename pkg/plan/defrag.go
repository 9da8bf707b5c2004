package plan

import (
	"slices"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

// DefragOptions say what `etcdadm defrag` does.
type DefragOptions struct {
	// Compact discards the history up to the current revision first, so
	// that the defragment has space to give back.
	Compact bool
	// Members are the inventory hosts whose members to defragment; empty
	// for every member.
	Members []string
}

// Defrag plans `etcdadm defrag`: the history compacted, then one member
// at a time, followers first, each defragmented behind a health gate; the
// leader last, once its leadership went to a follower defragmented
// already: a member applies nothing while its database is rewritten, and
// every proposal and lease renewal goes through the leader. NOSPACE is
// disarmed at the end, if every member's database is then under its quota
// (ops.QuotaUse). Refused while a member is not healthy: the others must
// keep quorum while one is out.
func Defrag(in Input, o DefragOptions) (*Plan, error) {
	if err := in.check(); err != nil {
		return nil, err
	}
	if in.Etcd == nil {
		in.Etcd = &facts.Cluster{}
	}
	if err := corrupt(in, "defrag"); err != nil {
		return nil, err
	}
	if err := unfinishedRestore(in, "defrag", ""); err != nil {
		return nil, err
	}
	var refused refusals
	e := in.Etcd
	if !e.Known() || e.Serializable || !e.HasQuorum() {
		refused.add("", "no quorum to defragment with (%s): bring the members back first", quorumWhy(in))
		return nil, refused.err("defrag")
	}
	var targets []defragTarget
	for _, h := range in.Cluster.Spec.Hosts {
		m, ok := e.Member(h.Name, manifests.PeerURL(h))
		if ok && (len(o.Members) == 0 || slices.Contains(o.Members, h.Name)) {
			targets = append(targets, defragTarget{h.Name, m})
		}
	}
	for _, n := range o.Members {
		if !slices.ContainsFunc(targets, func(t defragTarget) bool { return t.name == n }) {
			refused.add(n, "--members %s: not a member of the cluster among the inventory's hosts; name hosts of the inventory (`etcdadm status` lists the members)", n)
		}
	}
	for _, m := range e.Members {
		if !e.Healthy(m.ID) && !cutDefrag(in, m) {
			why := "not answering"
			if st, ok := e.Status[m.ID]; ok && st.Error != "" {
				why = st.Error
			} else if len(m.ClientURLs) > 0 && e.Unanswered[m.ClientURLs[0]].Error != "" {
				why = e.Unanswered[m.ClientURLs[0]].Error
			}
			refused.add(memberName(in, m), "is not healthy (%s): a defragment takes one member out at a time, and the others must keep quorum meanwhile; bring it back first", why)
		}
	}
	if err := refused.err("defrag"); err != nil {
		return nil, err
	}
	p := newPlan(in)
	var followers []defragTarget
	var leader *defragTarget
	for i, t := range targets {
		switch {
		case t.member.Learner:
			p.Warnings = append(p.Warnings, t.name+" is a learner: etcd serves it no defragment; it is left as it is")
		case t.member.ID == e.Leader():
			leader = &targets[i]
		default:
			followers = append(followers, t)
		}
	}
	// A member a cut run was defragmenting comes back before any other
	// member is taken out.
	slices.SortStableFunc(followers, func(a, b defragTarget) int {
		return boolRank(!cutDefrag(in, a.member)) - boolRank(!cutDefrag(in, b.member))
	})
	var stages []Stage
	if o.Compact {
		stages = append(stages, Stage{Name: "compact the history", Rollout: OneAtATime,
			Why:   "a defragment gives back only the space of revisions compacted away",
			Hosts: []HostOps{{Host: LocalHost, Ops: []Op{ops.Compact{}}}}})
	}
	voters := len(e.Voters())
	defrag := Stage{Name: "defragment the members", Rollout: OneAtATime, Quorum: facts.Quorum(voters),
		Why: "one member at a time, each healthy and caught up before the next; followers first, the leader last, after its leadership moved to a follower defragmented already: a member applies nothing while its database is rewritten, and every proposal and lease renewal goes through the leader"}
	for _, t := range followers {
		defrag.Hosts = append(defrag.Hosts, HostOps{Host: t.name, Ops: defragOps(in, t, ops.Defragment{Member: t.name})})
	}
	if leader != nil {
		steps := defragOps(in, *leader, ops.Defragment{Member: leader.name, Alone: voters == 1})
		switch to, ok := successor(in, followers, leader.member.ID); {
		case voters == 1:
			p.Warnings = append(p.Warnings, leader.name+" is the cluster's only member: it keeps its leadership, and the cluster takes no write while its database is rewritten")
		case !ok:
			refused.add(leader.name, "leads, and no other healthy voting member can take its leadership before it is defragmented")
		default:
			steps = append([]Op{ops.MoveLeaderTo{Member: to.name, MemberID: to.member.HexID(), From: leader.name,
				Why: "no member is defragmented while it leads"}}, steps...)
		}
		defrag.Hosts = append(defrag.Hosts, HostOps{Host: leader.name, Ops: steps})
	}
	if err := refused.err("defrag"); err != nil {
		return nil, err
	}
	if len(defrag.Hosts) > 0 {
		stages = append(stages, defrag)
	}
	var disarm []Op
	for _, a := range e.Alarmed(AlarmNoSpace) {
		if a.MemberID != 0 {
			disarm = append(disarm, ops.DisarmAlarm{Member: a.Member, MemberID: etcdclient.FormatID(a.MemberID), Type: a.Type, UnderQuota: true,
				Why: "the databases are under their quotas again"})
		}
	}
	if len(disarm) > 0 {
		stages = append(stages, Stage{Name: "disarm NOSPACE", Rollout: OneAtATime,
			Why:   "writes resume once every member's database takes at most 90% of its quota; checked when it runs",
			Hosts: []HostOps{{Host: LocalHost, Ops: disarm}}})
	}
	p.Stages = stages
	return p, nil
}

// defragOps defragment t behind its host's pending marker, when its host
// can be reached: a run cut meanwhile leaves the next one the marker, which
// waits for the member instead of refusing to run while it is busy. A
// member a cut run left pending is waited for first, up to the health gate.
func defragOps(in Input, t defragTarget, d ops.Defragment) []Op {
	hf := in.Hosts[t.name]
	if hf == nil {
		return []Op{d}
	}
	var steps []Op
	switch {
	case cutDefrag(in, t.member):
		steps = append(steps, ops.AwaitRestart{Member: t.name, Marker: facts.PendingDefrag, Why: "a run was cut while it defragmented this member, which finishes on its own"})
	case !hf.HasPending(facts.PendingDefrag):
		steps = append(steps, ops.Mark{Marker: facts.PendingDefrag, Why: "a run cut while the member is defragmented leaves it to the next, which waits for it"})
	}
	return append(steps, d, ops.Unmark{Marker: facts.PendingDefrag})
}

// cutDefrag reports whether a run that was cut was defragmenting member m,
// which is not healthy now: its host holds the pending marker.
func cutDefrag(in Input, m etcdclient.Member) bool {
	if in.Etcd.Healthy(m.ID) {
		return false
	}
	for _, h := range in.Cluster.Spec.Hosts {
		if hf := in.Hosts[h.Name]; hf != nil && hf.HasPending(facts.PendingDefrag) && (m.Name == h.Name || m.HasPeerURL(manifests.PeerURL(h))) {
			return true
		}
	}
	return false
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// defragTarget is a member to defragment, by its inventory host's name.
type defragTarget struct {
	name   string
	member etcdclient.Member
}

// successor is the member the leader hands over to: the follower
// defragmented last in this plan, else any healthy voter but the leader.
func successor(in Input, done []defragTarget, leader uint64) (defragTarget, bool) {
	if len(done) > 0 {
		return done[len(done)-1], true
	}
	for _, h := range in.Cluster.Spec.Hosts {
		m, ok := in.Etcd.Member(h.Name, manifests.PeerURL(h))
		if ok && m.ID != leader && !m.Learner && in.Etcd.Healthy(m.ID) {
			return defragTarget{h.Name, m}, true
		}
	}
	return defragTarget{}, false
}
