package plan

import (
	"slices"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

// The defragment's order: the history compacted first, then the
// followers one at a time, then leadership handed to the follower
// defragmented last, then the old leader; NOSPACE disarmed at the end.
func TestDefragOrder(t *testing.T) {
	w := newWorld(t, 3)
	e := sized(withAlarm(t, etcdView(t, "n0", names3...), AlarmNoSpace, "n2"), 16*mib, 2*mib, 16*mib)
	in := Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: w.allBootstrapped(t), Etcd: e, Now: fixedNow}
	p, err := Defrag(in, DefragOptions{Compact: true})
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, p)
	var names []string
	for _, st := range p.Stages {
		names = append(names, st.Name)
	}
	if strings.Join(names, " | ") != "compact the history | defragment the members | disarm NOSPACE" {
		t.Fatalf("stages %v:\n%s", names, planText(p))
	}
	if got := kinds(stageOps(p.Stages[0], LocalHost)); !slices.Equal(got, []string{string(ops.KindCompact)}) {
		t.Errorf("first stage: %v", got)
	}
	st := p.Stages[1]
	if st.Rollout != OneAtATime || st.Quorum != 2 || !slices.Equal(stageHosts(st), []string{"n1", "n2", "n0"}) {
		t.Errorf("stage %s, quorum %d, hosts %v; want n1, n2, then the leader n0, one at a time", st.Rollout, st.Quorum, stageHosts(st))
	}
	for _, n := range []string{"n1", "n2"} {
		steps := stageOps(st, n)
		if !slices.Equal(kinds(steps), []string{"mark " + facts.PendingDefrag, string(ops.KindDefragment), "unmark " + facts.PendingDefrag}) {
			t.Errorf("%s: %v, want the defragment behind its host's marker", n, kinds(steps))
			continue
		}
		if d := as[ops.Defragment](t, steps[1]); d.Member != n || d.Alone || !d.Meta().Disruptive {
			t.Errorf("%s: %+v", n, d)
		}
	}
	leader := stageOps(st, "n0")
	if got := kindsOnly(leader); !slices.Equal(got, []ops.Kind{ops.KindMoveLeaderTo, ops.KindMark, ops.KindDefragment, ops.KindUnmark}) {
		t.Fatalf("n0: %v", got)
	}
	if m := as[ops.MoveLeaderTo](t, leader[0]); m.Member != "n2" || m.MemberID != etcdclient.FormatID(idOf(t, "n2")) || m.From != "n0" {
		t.Errorf("leadership goes to %+v, want n2, defragmented already", m)
	}
	d := as[ops.DisarmAlarm](t, p.Stages[2].Hosts[0].Ops[0])
	if d.Type != AlarmNoSpace || d.Member != "n2" || !d.UnderQuota {
		t.Errorf("disarm %+v", d)
	}

	// Without compaction, and for the leader alone: leadership goes to any
	// healthy follower, none of which this run defragments.
	p, err = Defrag(in, DefragOptions{Members: []string{"n0"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Stages) != 2 || p.Stages[0].Name != "defragment the members" || !slices.Equal(stageHosts(p.Stages[0]), []string{"n0"}) {
		t.Fatalf("the leader alone:\n%s", planText(p))
	}
	if m := as[ops.MoveLeaderTo](t, stageOps(p.Stages[0], "n0")[0]); m.Member != "n1" {
		t.Errorf("leadership goes to %s, want n1", m.Member)
	}
	// Followers only: nobody's leadership moves.
	p, err = Defrag(in, DefragOptions{Members: []string{"n2", "n1"}})
	if err != nil || !slices.Equal(stageHosts(p.Stages[0]), []string{"n1", "n2"}) || slices.ContainsFunc(opsOf(p, "n1"), isKind(ops.KindMoveLeaderTo)) {
		t.Errorf("followers: %v\n%s", err, planText(p))
	}
}

// Refused while a member is not healthy, or with a --members name that is
// no member; a learner is left alone; a cluster of one defragments its
// leader, warning that writes stop meanwhile.
func TestDefragRefusals(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	e := etcdView(t, "n0", names3...)
	down(t, e, "n2")
	in := Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: e, Now: fixedNow}
	_, err := Defrag(in, DefragOptions{Compact: true})
	if err == nil || !strings.HasPrefix(err.Error(), "defrag refused, nothing was changed") || !strings.Contains(err.Error(), "n2: is not healthy (no answer in time") {
		t.Errorf("a member down: %v", err)
	}
	in.Etcd = etcdView(t, "n0", names3...)
	_, err = Defrag(in, DefragOptions{Members: []string{"n1", "n7"}})
	if err == nil || !strings.Contains(err.Error(), "--members n7: not a member") {
		t.Errorf("an unknown member: %v", err)
	}
	in.Etcd = etcdView(t, "n0", names3...)
	learner(t, in.Etcd, "n2")
	p, err := Defrag(in, DefragOptions{})
	if err != nil || !slices.Equal(stageHosts(p.Stages[0]), []string{"n1", "n0"}) || !strings.Contains(strings.Join(p.Warnings, "\n"), "n2 is a learner") {
		t.Errorf("a learner: %v\n%s", err, planText(p))
	}

	w1 := newWorld(t, 1)
	in1 := Input{Cluster: w1.c, Runtime: rtOf(w1.c), PKI: w1.pki, Hosts: w1.allBootstrapped(t), Etcd: etcdView(t, "n0", "n0"), Now: fixedNow}
	p, err = Defrag(in1, DefragOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, p)
	if steps := stageOps(p.Stages[0], "n0"); len(steps) != 3 || !as[ops.Defragment](t, steps[1]).Alone || !strings.Contains(strings.Join(p.Warnings, "\n"), "only member") {
		t.Errorf("a cluster of one:\n%s", planText(p))
	}
}

// A member a cut run was defragmenting (its host's marker there, the
// member busy) is not refused: it is waited for first, up to the health
// gate, then defragmented again before any other member; a host that
// cannot be reached gets no marker.
func TestDefragAfterACutRun(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	e := etcdView(t, "n0", names3...)
	unhealthy(t, e, "n2")
	hosts["n2"].Pending = []string{facts.PendingDefrag}
	in := Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: e, Now: fixedNow}
	p, err := Defrag(in, DefragOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := p.Stages[0]
	if !slices.Equal(stageHosts(st), []string{"n2", "n1", "n0"}) {
		t.Errorf("order %v, want n2 first", stageHosts(st))
	}
	if got := kindsOnly(stageOps(st, "n2")); !slices.Equal(got, []ops.Kind{ops.KindAwaitRestart, ops.KindDefragment, ops.KindUnmark}) {
		t.Errorf("n2: %v", got)
	}
	delete(in.Hosts, "n1")
	hosts["n2"].Pending = nil
	_, err = Defrag(in, DefragOptions{})
	if err == nil || !strings.Contains(err.Error(), "n2: is not healthy") {
		t.Errorf("n2 busy without the marker: %v", err)
	}
	in.Etcd = etcdView(t, "n0", names3...)
	p, err = Defrag(in, DefragOptions{})
	if err != nil || len(stageOps(p.Stages[0], "n1")) != 1 {
		t.Errorf("an unreachable host: %v\n%s", err, planText(p))
	}
}
