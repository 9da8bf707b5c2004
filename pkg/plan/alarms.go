package plan

import (
	"fmt"
	"strings"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

// The alarms etcd raises.
const (
	AlarmNoSpace = "NOSPACE"
	AlarmCorrupt = "CORRUPT"
)

// raiser is the member that raised an alarm, as the plan knows it.
type raiser struct {
	// host is its inventory host, "" when none.
	host   string
	member etcdclient.Member
	// listed is set when it is still a member of the cluster.
	listed bool
}

func raiserOf(in Input, a etcdclient.Alarm) raiser {
	r := raiser{}
	if a.MemberID == 0 {
		return r
	}
	r.member, r.listed = in.Etcd.MemberByID(a.MemberID)
	for _, h := range in.Cluster.Spec.Hosts {
		if r.listed && r.member.HasPeerURL(manifests.PeerURL(h)) || !r.listed && a.Member == h.Name {
			r.host = h.Name
		}
	}
	return r
}

// describeRaiser says who raised an alarm: " of member NAME (ID)", or
// nothing when the alarm list could not be read.
func describeRaiser(a etcdclient.Alarm) string {
	switch {
	case a.MemberID == 0:
		return ""
	case a.Member != "" && a.Member != etcdclient.FormatID(a.MemberID):
		return fmt.Sprintf(" of member %s (%s)", a.Member, etcdclient.FormatID(a.MemberID))
	}
	return " of member " + etcdclient.FormatID(a.MemberID)
}

// checkCorrupt refuses every change while a CORRUPT alarm is raised: etcd
// found a member whose data differs from its peers', and takes no write
// until the alarm is disarmed; restarting, rolling or defragmenting members
// then could only spread or hide the damage.
func checkCorrupt(in Input, refused *refusals) {
	for _, a := range in.Etcd.Alarmed(AlarmCorrupt) {
		refuseCorrupt(in, a, refused)
	}
}

// refuseCorrupt names the member of a CORRUPT alarm and what to do.
func refuseCorrupt(in Input, a etcdclient.Alarm, refused *refusals) {
	r := raiserOf(in, a)
	switch {
	case a.MemberID == 0:
		refused.add("", "a CORRUPT alarm is raised (the member that raised it cannot be read without quorum): etcd found a member whose data differs from its peers', and the cluster takes no write until the alarm is disarmed; nothing is changed while it is raised. Bring the quorum back, then run `etcdadm alarm list` to see which member")
	case !r.listed:
		refused.add(r.host, "a CORRUPT alarm%s is still raised, although that member was removed: the cluster takes no write until it is disarmed; nothing is changed while it is raised. Run `etcdadm alarm disarm`, then this command again", describeRaiser(a))
	default:
		name := r.host
		if name == "" {
			name = orID(r.member)
		}
		refused.add(r.host, "a CORRUPT alarm is raised for member %s (%s): etcd found that its data differs from its peers', and the cluster takes no write until the alarm is disarmed; nothing is changed while it is raised. Check that its hash is the odd one out (`etcdctl endpoint hashkv --cluster`), take it out by hand (`etcdctl member remove %s`), then run `etcdadm alarm disarm`, `etcdadm reset %s` and `etcdadm apply`, which adds it back with fresh data",
			name, r.member.HexID(), r.member.HexID(), name)
	}
}

// corrupt is checkCorrupt's refusal of a command, nil when no CORRUPT
// alarm is raised.
func corrupt(in Input, what string) error {
	var refused refusals
	checkCorrupt(in, &refused)
	return refused.err(what)
}

// Disarm plans `etcdadm alarm disarm`: one operation per active alarm. A
// NOSPACE alarm is disarmed only once every member's database is under its
// quota again, with room to write (ops.QuotaUse; the next writes would
// raise it again otherwise); a CORRUPT alarm only once the member it names
// is no longer a member.
func Disarm(in Input) (*Plan, error) {
	if err := in.check(); err != nil {
		return nil, err
	}
	if in.Etcd == nil {
		in.Etcd = &facts.Cluster{}
	}
	var refused refusals
	if !in.Etcd.Known() || in.Etcd.Serializable || !in.Etcd.LeaderSeen() {
		refused.add("", "etcd disarms an alarm through its quorum, and there is none (%s): bring the members back first", quorumWhy(in))
		return nil, refused.err("alarm disarm")
	}
	p := newPlan(in)
	if len(in.Etcd.Alarms) == 0 {
		p.Warnings = append(p.Warnings, "no alarm is raised: nothing to disarm")
		return p, nil
	}
	var steps []Op
	checked := false
	for _, a := range in.Etcd.Alarms {
		r := raiserOf(in, a)
		switch {
		case a.MemberID == 0:
			refused.add("", "alarm %s: the alarm list did not say which member raised it; run again", a.Type)
			continue
		case a.Type == AlarmCorrupt && r.listed:
			refuseCorrupt(in, a, &refused)
			continue
		case a.Type == AlarmNoSpace && !checked:
			overQuota(in, &refused)
			checked = true
		}
		steps = append(steps, ops.DisarmAlarm{Member: a.Member, MemberID: etcdclient.FormatID(a.MemberID), Type: a.Type, UnderQuota: a.Type == AlarmNoSpace})
	}
	if err := refused.err("alarm disarm"); err != nil {
		return nil, err
	}
	p.Stages = []Stage{{Name: "disarm the alarms", Rollout: OneAtATime, Hosts: []HostOps{{Host: LocalHost, Ops: steps}}}}
	return p, nil
}

// overQuota refuses while a member's database is at or over its quota, or
// its size is unknown: a NOSPACE alarm disarmed then is raised again by
// the next write.
func overQuota(in Input, refused *refusals) {
	var sts []etcdclient.MemberStatus
	for _, m := range in.Etcd.Members {
		if !m.Started() {
			continue
		}
		st, ok := in.Etcd.Status[m.ID]
		if !ok {
			st.Error = "no status"
			if len(m.ClientURLs) > 0 {
				st.Error = in.Etcd.Unanswered[m.ClientURLs[0]].Error
			}
		}
		st.Name = memberName(in, m)
		sts = append(sts, st)
	}
	if over := ops.OverQuota(in.Cluster, sts); len(over) > 0 {
		refused.add("", "NOSPACE stays armed: %s. A NOSPACE alarm disarmed now would be raised again by the next write. Run `etcdadm defrag` (it compacts the history, gives the free space back, then disarms NOSPACE), or raise quota-backend-bytes in spec.etcd.extraArgs and run `etcdadm apply`, then disarm",
			strings.Join(over, "; "))
	}
}

// memberName is the inventory's name of a member, else its own name or ID.
func memberName(in Input, m etcdclient.Member) string {
	for _, h := range in.Cluster.Spec.Hosts {
		if m.HasPeerURL(manifests.PeerURL(h)) {
			return h.Name
		}
	}
	return orID(m)
}
