package plan

import (
	"slices"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

// otherCluster is the ID of a cluster the inventory is not about.
const otherCluster = 0x0bad0c1a55

// strayInventory is a 4-host inventory whose n3 reaches a running member
// of another cluster: three members of this one, and n3's etcd answering
// at its client URL for the other cluster, its data that cluster's too.
func strayInventory(t *testing.T) (*world, Input) {
	t.Helper()
	w := newWorld(t, 4)
	hosts := w.allBootstrapped(t)
	hosts["n3"].DataDir.ClusterID = otherCluster
	e := etcdView(t, "n0", names3...)
	e.Foreign = map[string]etcdclient.MemberStatus{clientOf("n3"): {Name: "n3", Endpoint: clientOf("n3"), MemberID: idOf(t, "n3"),
		ClusterID: otherCluster, LeaderID: idOf(t, "n3"), Healthy: true}}
	return w, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: e, Now: fixedNow}
}

// An inventory address that reaches another cluster's member: apply,
// reset and member remove refuse it, naming what answered there, and
// apply offers no reset for it.
func TestAnotherClustersMemberIsNeverStopped(t *testing.T) {
	_, in := strayInventory(t)
	p, err := build(t, in)
	refusedWith(t, p, err, "n3", "runs a member of another cluster", "answers at "+clientOf("n3")+" as member "+etcdclient.FormatID(idOf(t, "n3"))+" of cluster bad0c1a55",
		"this cluster is "+etcdclient.FormatID(testClusterID), "check the inventory's address of n3 (192.0.2.13)")
	if strings.Contains(err.Error(), "reset") {
		t.Errorf("apply offers reset for another cluster's member: %v", err)
	}
	p, err = checked(t)(Reset(in, "n3"))
	refusedWith(t, p, err, "n3", "runs a member of another cluster", "touches no member of another cluster")
	p, err = checked(t)(Remove(in, "n3"))
	refusedWith(t, p, err, "n3", "runs a member of another cluster")
	p, err = checked(t)(Replace(in, "n3", false))
	refusedWith(t, p, err, "n3", "runs a member of another cluster")

	// Not answering, it is known by its data.
	delete(in.Etcd.Foreign, clientOf("n3"))
	p, err = checked(t)(Reset(in, "n3"))
	refusedWith(t, p, err, "n3", "did not answer at "+clientOf("n3"), "data directory holds member", "of cluster bad0c1a55")

	// Stopped, its data is another cluster's: reset moves it aside,
	// saying so; member remove does not.
	stop(in.Hosts["n3"])
	p = mustPlan(t)(Reset(in, "n3"))
	if !slices.ContainsFunc(p.Warnings, func(s string) bool { return strings.Contains(s, "of another cluster") }) || len(p.Stages) != 1 {
		t.Errorf("reset of another cluster's data:\n%s", planText(p))
	}
	p, err = checked(t)(Remove(in, "n3"))
	refusedWith(t, p, err, "n3", "of another cluster than this one", "check the inventory's address of n3")
}

// A member whose name and peer URL are not the inventory's (a DNS peer
// URL, a node name) is still known by the ID its etcd answers with: reset
// refuses it, member remove removes that member by ID; an etcd that runs
// and cannot be identified is never stopped, nor is another member of
// this cluster reached through a wrong address.
func TestMembersAreKnownByTheirIDs(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	e := etcdView(t, "n0", names3...)
	dns := viewMember(t, e, "n2")
	dns.Name, dns.PeerURLs = "etcd-c", []string{"https://n2.example.com:2380"}
	in := Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: e, Now: fixedNow}
	p, err := checked(t)(Reset(in, "n2"))
	refusedWith(t, p, err, "n2", "member etcd-c", "remove it first with `etcdadm member remove n2`")
	p = mustPlan(t)(Remove(in, "n2"))
	steps := opsOf(p, "n2")
	if rm, _ := first[ops.RemoveMember](steps); rm.MemberID != etcdclient.FormatID(idOf(t, "n2")) {
		t.Errorf("remove %+v, want n2's member by its ID", rm)
	}
	if _, i := first[ops.StopEtcd](steps); i < 0 || !slices.ContainsFunc(p.Warnings, func(s string) bool { return strings.Contains(s, "etcd-c") }) {
		t.Errorf("n2: %v, warnings %q", kinds(steps), p.Warnings)
	}

	// n1's address reaching n0's member.
	in.Etcd = etcdView(t, "n0", names3...)
	st := in.Etcd.Status[idOf(t, "n0")]
	delete(in.Etcd.Status, idOf(t, "n1"))
	st.Endpoint = clientOf("n1")
	in.Etcd.Status[idOf(t, "n0")] = st
	p, err = checked(t)(Remove(in, "n1"))
	refusedWith(t, p, err, "n1", "which is member n0", "not member "+etcdclient.FormatID(idOf(t, "n1")))

	// An etcd that neither answers nor has readable IDs.
	in.Etcd = etcdView(t, "n0", "n0", "n1")
	hosts["n2"].DataDir = facts.DataDir{Exists: true, Entries: 1, HasWAL: true}
	p, err = checked(t)(Reset(in, "n2"))
	refusedWith(t, p, err, "n2", "cannot be identified", "stop it by hand")
	p, err = checked(t)(Remove(in, "n2"))
	refusedWith(t, p, err, "n2", "cannot be identified")
}

// A member removed while its host was down leaves stale data there:
// member replace stops what runs on it and moves the data under the
// backup directory before the learner is added.
func TestReplaceMovesStaleDataAside(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	stop(hosts["n2"])
	in := Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n0", "n0", "n1"), Now: fixedNow}
	p := mustPlan(t)(Replace(in, "n2", false))
	steps := opsOf(p, "n2")
	_, stopAt := first[ops.StopEtcd](steps)
	b, backupAt := first[ops.Backup](steps)
	_, addAt := first[ops.AddLearner](steps)
	if stopAt < 0 || backupAt < stopAt || b.Path != w.c.Spec.Etcd.DataDir || addAt < backupAt {
		t.Errorf("n2: %v; want its stale member stopped and its data moved aside before the learner is added", kinds(steps))
	}
}

// recover stops every member: an etcd that answers for another cluster
// at an inventory address, or that cannot be identified, refuses it.
func TestRecoverStopsOnlyThisClustersMembers(t *testing.T) {
	w := newWorld(t, 3)
	in := lostQuorum(t, w)
	in.Hosts["n1"] = w.bootstrapped(t, "n1")
	in.Hosts["n1"].DataDir = facts.DataDir{Exists: true}
	in.Etcd.Foreign = map[string]etcdclient.MemberStatus{clientOf("n1"): {Name: "n1", Endpoint: clientOf("n1"), MemberID: 0x77, ClusterID: otherCluster}}
	p, err := checked(t)(Recover(in, "n0"))
	refusedWith(t, p, err, "n1", "runs a member of another cluster", "answers at "+clientOf("n1")+" as member 77 of cluster bad0c1a55")
	delete(in.Etcd.Foreign, clientOf("n1"))
	p, err = checked(t)(Recover(in, "n0"))
	refusedWith(t, p, err, "n1", "cannot be identified")
}

// member move stops the member on its old host: what runs there must be
// that member.
func TestMoveStopsOnlyTheMovingMember(t *testing.T) {
	_, in, from := moved(t)
	// Its etcd does not answer there; its data is n0's.
	unhealthy(t, in.Etcd, "n2")
	st := in.Etcd.Status[idOf(t, "n2")]
	st.Endpoint = "https://elsewhere:2379"
	in.Etcd.Status[idOf(t, "n2")] = st
	from.Facts.DataDir.MemberID = idOf(t, "n0")
	p, err := checked(t)(Move(in, "n2", from))
	refusedWith(t, p, err, from.Host, "which is member n0", "not member "+etcdclient.FormatID(idOf(t, "n2")))
	from.Facts.DataDir.ClusterID = otherCluster
	p, err = checked(t)(Move(in, "n2", from))
	refusedWith(t, p, err, from.Host, "runs a member of another cluster")
}
