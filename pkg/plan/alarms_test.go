package plan

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

const mib = 1 << 20

// withAlarm raises alarm kind for member name in the view: every status
// lists it, as etcd's do, and the alarm list names the member.
func withAlarm(t *testing.T, e *facts.Cluster, kind, name string) *facts.Cluster {
	t.Helper()
	for id, st := range e.Status {
		st.Alarms = append(st.Alarms, kind)
		if kind == AlarmCorrupt {
			st.Healthy, st.Error = false, "active alarm CORRUPT: the cluster takes no writes until it is disarmed"
		}
		e.Status[id] = st
	}
	if kind == AlarmCorrupt {
		e.LeaderID = 0
	}
	e.Alarms = append(e.Alarms, etcdclient.Alarm{MemberID: idOf(t, name), Member: name, Type: kind})
	return e
}

// sized gives every member of the view a database of size bytes, of which
// inUse in use, under a quota of quota bytes.
func sized(e *facts.Cluster, size, inUse, quota int64) *facts.Cluster {
	for id, st := range e.Status {
		st.DBSize, st.DBSizeInUse, st.DBSizeQuota = size, inUse, quota
		e.Status[id] = st
	}
	return e
}

// slowMember makes the named member take the connection but answer
// nothing in time.
func slowMember(t *testing.T, e *facts.Cluster, name string) {
	t.Helper()
	delete(e.Status, idOf(t, name))
	e.Unanswered[clientOf(name)] = etcdclient.MemberStatus{Name: name, Endpoint: clientOf(name),
		Error: "no answer in time (member down, unreachable, or no quorum)", TimedOut: true}
}

const quotaArgs = "extraArgs: {quota-backend-bytes: \"67108864\"}"

// A NOSPACE alarm on a healthy quorum is no lost quorum: raising the
// quota, its usual fix, restarts the members one at a time, the leader
// last, behind the quorum check, as any other change.
func TestBuildRollsANoSpaceCluster(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	e := sized(withAlarm(t, etcdView(t, "n1", names3...), AlarmNoSpace, "n1"), 16*mib, 15*mib, 16*mib)
	w2 := w.changed(t, 3, quotaArgs)
	p := mustBuild(t, Input{Cluster: w2.c, Runtime: rtOf(w2.c), PKI: w2.pki, Hosts: hosts, Etcd: e, Now: fixedNow})
	if len(p.Stages) != 1 {
		t.Fatalf("want one stage:\n%s", planText(p))
	}
	st := p.Stages[0]
	if st.Rollout != OneAtATime || st.Quorum != 2 || st.QuorumLost != "" || !slices.Equal(stageHosts(st), []string{"n0", "n2", "n1"}) {
		t.Errorf("stage %q %s quorum %d, hosts %v; want one at a time, quorum 2, the leader n1 last:\n%s", st.Name, st.Rollout, st.Quorum, stageHosts(st), planText(p))
	}
	for _, n := range names3 {
		if r, _ := first[ops.RestartEtcd](stageOps(st, n)); !r.Disruptive {
			t.Errorf("%s is not restarted: %v", n, kinds(stageOps(st, n)))
		}
		m := facts.ParseManifest(plannedFile(t, p, n, w.manifestPath()).Data)
		if m.Flags["quota-backend-bytes"] != "67108864" {
			t.Errorf("%s: the manifest does not raise the quota", n)
		}
	}
}

// Two members slow to answer, the third naming a leader: too few healthy
// voters, but quorum is not lost. Nothing restarts them all at once;
// restarting any member is refused, saying why.
func TestBuildSlowMembersAreNoRecovery(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	e := etcdView(t, "n0", names3...)
	slowMember(t, e, "n1")
	slowMember(t, e, "n2")
	w2 := w.changed(t, 3, quotaArgs)
	p, err := build(t, Input{Cluster: w2.c, Runtime: rtOf(w2.c), PKI: w2.pki, Hosts: hosts, Etcd: e, Now: fixedNow})
	re := mustRefuse(t, p, err)
	if len(re.Refusals) != 3 {
		t.Errorf("want each member's restart refused: %v", err)
	}
	for _, r := range re.Refusals {
		if !strings.Contains(r.Reason, "the loss of quorum is not confirmed") || !strings.Contains(r.Reason, "slow to answer: n1, n2") {
			t.Errorf("%s: %s", r.Host, r.Reason)
		}
	}
	// Without a change, nothing to do: a slow cluster is left alone.
	p = mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: e, Now: fixedNow})
	if !p.Empty() {
		t.Errorf("a slow cluster with nothing to change:\n%s", planText(p))
	}
}

// A confirmed loss of quorum brings every member back at once; the stage
// that starts them carries what the plan saw, for the executor to check
// again right before.
func TestBuildConfirmedLossRecovers(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	e := etcdView(t, "", names3...)
	e.Serializable = true
	down(t, e, "n1")
	down(t, e, "n2")
	unhealthy(t, e, "n0")
	w2 := w.changed(t, 3, quotaArgs)
	in := Input{Cluster: w2.c, Runtime: rtOf(w2.c), PKI: w2.pki, Hosts: hosts, Etcd: e, Now: fixedNow}

	// Not confirmed (a first read alone, say): refused, not recovered.
	p, err := build(t, in)
	mustRefuse(t, p, err)

	e.QuorumLost, e.QuorumWhy = true, "no member named a leader in two reads 3s apart (n0 answered without one)"
	p = mustBuild(t, in)
	if len(p.Stages) != 2 || !strings.HasPrefix(p.Stages[0].Name, "recovery") {
		t.Fatalf("want a recovery:\n%s", planText(p))
	}
	prepare, start := p.Stages[0], p.Stages[1]
	if start.Rollout != AllAtOnce || len(start.Hosts) != 3 || start.QuorumLost != e.QuorumWhy || prepare.QuorumLost != "" {
		t.Errorf("start %s on %v claims %q, prepare claims %q", start.Rollout, stageHosts(start), start.QuorumLost, prepare.QuorumLost)
	}
	if !strings.Contains(planText(p), "only while no member names a leader, asked again right before: "+e.QuorumWhy) {
		t.Errorf("the plan does not say what it assumes:\n%s", planText(p))
	}
}

// corruptView is three healthy members, n1 leading, with a CORRUPT alarm
// raised for n2.
func corruptView(t *testing.T) *facts.Cluster {
	return withAlarm(t, etcdView(t, "n1", names3...), AlarmCorrupt, "n2")
}

// checkCorruptRefusal checks that err refuses for the CORRUPT alarm of n2,
// naming it and what to do.
func checkCorruptRefusal(t *testing.T, what string, err error) {
	t.Helper()
	var re *RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("%s: %v, want a refusal", what, err)
	}
	for _, r := range re.Refusals {
		if r.Host == "n2" && strings.Contains(r.Reason, "CORRUPT alarm is raised for member n2 ("+etcdclient.FormatID(idOf(t, "n2"))+")") &&
			strings.Contains(r.Reason, "etcdctl member remove "+etcdclient.FormatID(idOf(t, "n2"))) && strings.Contains(r.Reason, "etcdadm reset n2") {
			return
		}
	}
	t.Errorf("%s: no refusal names n2's CORRUPT alarm and what to do: %v", what, err)
}

// A CORRUPT alarm stops every change, naming the member and what to do.
func TestCorruptRefusesEveryChange(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	in := func(w *world) Input {
		return Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: corruptView(t), Now: fixedNow}
	}
	// apply, certs renew and each stage of rotate-ca are plan.Build.
	p, err := build(t, in(w.changed(t, 3, quotaArgs)))
	mustRefuse(t, p, err)
	checkCorruptRefusal(t, "apply", err)
	_, err = build(t, in(w))
	checkCorruptRefusal(t, "apply without a change", err)
	_, err = Remove(in(w), "n0")
	checkCorruptRefusal(t, "member remove", err)
	_, err = Replace(in(w), "n2", true)
	checkCorruptRefusal(t, "member replace", err)
	_, err = Reset(in(w), "n2")
	checkCorruptRefusal(t, "reset", err)
	_, err = Restore(in(w), staged)
	checkCorruptRefusal(t, "snapshot restore", err)
	_, err = Defrag(in(w), DefragOptions{Compact: true})
	checkCorruptRefusal(t, "defrag", err)
	_, err = Disarm(in(w))
	checkCorruptRefusal(t, "alarm disarm", err)

	// Once the member is out of the cluster, its alarm can be disarmed, and
	// only that is allowed until then.
	gone := in(w)
	gone.Etcd.Members = slices.DeleteFunc(gone.Etcd.Members, func(m etcdclient.Member) bool { return m.Name == "n2" })
	_, err = Reset(gone, "n2")
	if err == nil || !strings.Contains(err.Error(), "was removed") || !strings.Contains(err.Error(), "etcdadm alarm disarm") {
		t.Errorf("reset with the alarm of a removed member: %v", err)
	}
	p, err = Disarm(gone)
	if err != nil {
		t.Fatal(err)
	}
	d := as[ops.DisarmAlarm](t, p.Stages[0].Hosts[0].Ops[0])
	if len(p.Stages) != 1 || d.Type != AlarmCorrupt || d.Member != "n2" || d.MemberID != etcdclient.FormatID(idOf(t, "n2")) || d.UnderQuota {
		t.Errorf("disarm of a removed member's CORRUPT alarm:\n%s", planText(p))
	}
}

// NOSPACE is disarmed only once every member's database is under its
// quota again; otherwise refused, naming who is over by how much.
func TestDisarmNoSpace(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	e := sized(withAlarm(t, etcdView(t, "n1", names3...), AlarmNoSpace, "n1"), 17*mib, 4*mib, 16*mib)
	in := Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: e, Now: fixedNow}
	_, err := Disarm(in)
	var re *RefusedError
	if !errors.As(err, &re) || len(re.Refusals) != 1 || !strings.HasPrefix(err.Error(), "alarm disarm refused, nothing was changed") {
		t.Fatalf("over quota: %v", err)
	}
	for _, want := range []string{"n0's database is 17.0 MiB, 2.6 MiB over 90% of its quota of 16.0 MiB", "n2's database", "Run `etcdadm defrag`"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal lacks %q: %v", want, err)
		}
	}
	// A member whose size is unknown is refused too.
	sized(e, 4*mib, 4*mib, 16*mib)
	slowMember(t, e, "n2")
	if _, err := Disarm(in); err == nil || !strings.Contains(err.Error(), "n2 did not answer") {
		t.Errorf("a member without status: %v", err)
	}
	e = sized(withAlarm(t, etcdView(t, "n1", names3...), AlarmNoSpace, "n1"), 4*mib, 4*mib, 16*mib)
	in.Etcd = e
	p, err := Disarm(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Stages) != 1 || len(p.Stages[0].Hosts) != 1 || p.Stages[0].Hosts[0].Host != LocalHost {
		t.Fatalf("want one operation here:\n%s", planText(p))
	}
	d := as[ops.DisarmAlarm](t, p.Stages[0].Hosts[0].Ops[0])
	if d.Member != "n1" || d.Type != AlarmNoSpace || !d.UnderQuota {
		t.Errorf("disarm %+v", d)
	}
	// No alarm: nothing to do. No quorum: refused.
	in.Etcd = etcdView(t, "n1", names3...)
	if p, err := Disarm(in); err != nil || !p.Empty() || len(p.Warnings) != 1 {
		t.Errorf("no alarm: %v\n%s", err, planText(p))
	}
	in.Etcd = withAlarm(t, etcdView(t, "", names3...), AlarmNoSpace, "n1")
	in.Etcd.Serializable = true
	if _, err := Disarm(in); err == nil || !strings.Contains(err.Error(), "through its quorum") {
		t.Errorf("no quorum: %v", err)
	}
}
