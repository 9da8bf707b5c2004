package plan

// Scenarios of the membership planners: member remove, reset and member
// replace.

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

// checked(t)(Remove(...)) checks the invariants of a plan made.
func checked(t *testing.T) func(*Plan, error) (*Plan, error) {
	return func(p *Plan, err error) (*Plan, error) {
		t.Helper()
		if err == nil {
			checkInvariants(t, p)
		}
		return p, err
	}
}

// mustPlan(t)(Remove(...)) is a plan that must be made.
func mustPlan(t *testing.T) func(*Plan, error) *Plan {
	return func(p *Plan, err error) *Plan {
		t.Helper()
		if _, err := checked(t)(p, err); err != nil {
			t.Fatalf("plan refused: %v", err)
		}
		return p
	}
}

// cleanup is what a host that leaves gets: its manifest and data moved
// away, every other file backed up, the kubelet stopped.
func cleanup(w *world, hf *facts.Host) []string {
	out := []string{string(ops.KindStopEtcd), "backup " + w.c.Spec.Etcd.DataDir}
	var files []string
	for p, st := range hf.Files {
		if !st.Dir && p != w.manifestPath() {
			files = append(files, p)
		}
	}
	for _, p := range sorted(files) {
		out = append(out, "backup "+p)
	}
	return append(out, "run "+CmdDaemonReload, "run "+CmdStopKube)
}

// 14. member remove.
func TestRemove(t *testing.T) {
	t.Run("healthy voter", func(t *testing.T) {
		w := newWorld(t, 3)
		hosts := w.allBootstrapped(t)
		p := mustPlan(t)(Remove(Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n2", names3...), Now: fixedNow}, "n2"))
		if len(p.Stages) != 1 || !slices.Equal(stageHosts(p.Stages[0]), []string{"n2"}) {
			t.Fatalf("want one stage for n2:\n%s", planText(p))
		}
		steps := stageOps(p.Stages[0], "n2")
		want := append([]string{string(ops.KindMoveLeader), string(ops.KindRemoveMember)}, cleanup(w, hosts["n2"])...)
		want = append(want, string(ops.KindWaitCluster))
		if diff := cmp.Diff(want, kinds(steps)); diff != "" {
			t.Fatalf("operations (-want +got):\n%s", diff)
		}
		hex := etcdclient.FormatID(idOf(t, "n2"))
		if as[ops.MoveLeader](t, steps[0]).Member != "n2" || as[ops.RemoveMember](t, steps[1]).Member != "n2" || as[ops.RemoveMember](t, steps[1]).MemberID != hex {
			t.Errorf("move-leader %+v, remove-member %+v; want n2 (%s)", steps[0], steps[1], hex)
		}
		if wc := as[ops.WaitCluster](t, steps[len(steps)-1]); !slices.Equal(wc.Members, []string{"n0", "n1"}) {
			t.Errorf("wait-cluster for %v, want [n0 n1]", wc.Members)
		}
	})
	t.Run("would cost quorum", func(t *testing.T) {
		w := newWorld(t, 3)
		e := etcdView(t, "n0", names3...)
		unhealthy(t, e, "n1")
		p, err := checked(t)(Remove(Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: w.allBootstrapped(t), Etcd: e, Now: fixedNow}, "n2"))
		re := mustRefuse(t, p, err)
		if !slices.ContainsFunc(re.Refusals, func(r Refusal) bool {
			return r.Host == "n2" && strings.Contains(r.Reason, "quorum") && strings.Contains(r.Reason, "1 healthy of 2")
		}) {
			t.Errorf("no refusal saying 1 healthy of 2 is below quorum:\n%v", err)
		}
	})
	t.Run("host unreachable", func(t *testing.T) {
		w := newWorld(t, 3)
		hosts := w.allBootstrapped(t)
		delete(hosts, "n2")
		p := mustPlan(t)(Remove(Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n0", names3...), Now: fixedNow}, "n2"))
		if len(p.Stages) != 1 {
			t.Fatalf("%d stages, want 1:\n%s", len(p.Stages), planText(p))
		}
		steps := stageOps(p.Stages[0], "n2")
		if diff := cmp.Diff([]ops.Kind{ops.KindMoveLeader, ops.KindRemoveMember, ops.KindWaitCluster}, kindsOnly(steps)); diff != "" {
			t.Errorf("operations (-want +got):\n%s", diff)
		}
		if !slices.ContainsFunc(p.Warnings, func(s string) bool {
			return strings.Contains(s, "not cleaned") && strings.Contains(s, "`etcdadm reset n2`")
		}) {
			t.Errorf("no warning that n2 was not cleaned, suggesting `etcdadm reset n2`: %q", p.Warnings)
		}
	})
	t.Run("learner while a voter is down", func(t *testing.T) {
		w := newWorld(t, 4)
		hosts := w.allBootstrapped(t)
		e := etcdView(t, "n0", "n0", "n1", "n2", "n3")
		learner(t, e, "n3")
		down(t, e, "n2")
		stop(hosts["n2"])
		in := Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: e, Now: fixedNow}
		// A voter cannot go: 1 healthy of the 2 voters left.
		p, err := checked(t)(Remove(in, "n0"))
		mustRefuse(t, p, err)
		// The learner can: it does not count towards quorum.
		p = mustPlan(t)(Remove(in, "n3"))
		steps := opsOf(p, "n3")
		if len(steps) == 0 || steps[0].Kind() != ops.KindRemoveMember || as[ops.RemoveMember](t, steps[0]).MemberID != etcdclient.FormatID(idOf(t, "n3")) {
			t.Fatalf("want remove-member n3 first, got %v", kinds(steps))
		}
		if _, i := findOp(steps, isKind(ops.KindMoveLeader)); i >= 0 {
			t.Error("move-leader for a learner, which cannot lead")
		}
		if wc, ok := steps[len(steps)-1].(ops.WaitCluster); !ok || !slices.Equal(wc.Members, []string{"n0", "n1"}) {
			t.Errorf("last op %s, want wait-cluster [n0 n1]", steps[len(steps)-1])
		}
	})
	t.Run("no quorum", func(t *testing.T) {
		w := newWorld(t, 3)
		e := etcdView(t, "", names3...)
		e.Serializable = true
		for _, n := range names3 {
			unhealthy(t, e, n)
		}
		p, err := checked(t)(Remove(Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: w.allBootstrapped(t), Etcd: e, Now: fixedNow}, "n2"))
		re := mustRefuse(t, p, err)
		if !slices.ContainsFunc(re.Refusals, func(r Refusal) bool { return strings.Contains(r.Reason, "quorum") }) {
			t.Errorf("refusal does not mention the quorum:\n%v", err)
		}
	})
}

// 15. reset.
func TestReset(t *testing.T) {
	t.Run("a member", func(t *testing.T) {
		w := newWorld(t, 3)
		p, err := checked(t)(Reset(Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: w.allBootstrapped(t), Etcd: etcdView(t, "n0", names3...), Now: fixedNow}, "n2"))
		re := mustRefuse(t, p, err)
		if !slices.ContainsFunc(re.Refusals, func(r Refusal) bool { return strings.Contains(r.Reason, "member remove") }) {
			t.Errorf("refusal does not point to member remove:\n%v", err)
		}
	})
	t.Run("leftovers of a removed member", func(t *testing.T) {
		w := newWorld(t, 3)
		hosts := w.allBootstrapped(t)
		hosts["n2"].DataDir.MemberID = 0xdead
		stop(hosts["n2"])
		p := mustPlan(t)(Reset(Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n0", "n0", "n1"), Now: fixedNow}, "n2"))
		if len(p.Stages) != 1 || !slices.Equal(stageHosts(p.Stages[0]), []string{"n2"}) {
			t.Fatalf("want one stage for n2:\n%s", planText(p))
		}
		steps := stageOps(p.Stages[0], "n2")
		if diff := cmp.Diff(cleanup(w, hosts["n2"]), kinds(steps)); diff != "" {
			t.Errorf("operations (-want +got):\n%s", diff)
		}
	})
	t.Run("nothing there", func(t *testing.T) {
		w := newWorld(t, 3)
		hosts := w.allBootstrapped(t)
		hosts["n2"] = emptyHost("n2")
		p := mustPlan(t)(Reset(Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n0", "n0", "n1"), Now: fixedNow}, "n2"))
		if !p.Empty() {
			t.Errorf("plan is not empty:\n%s", planText(p))
		}
		if !slices.ContainsFunc(p.Warnings, func(s string) bool { return strings.Contains(s, "nothing to do") }) {
			t.Errorf("no warning saying there is nothing to do: %q", p.Warnings)
		}
	})
}

// 16. member replace.
func TestReplace(t *testing.T) {
	// failed is n2 with its data lost, listed, not answering.
	failed := func(t *testing.T, withManifest bool) (*world, Input) {
		w := newWorld(t, 3)
		hosts := w.allBootstrapped(t)
		dropData(hosts["n2"])
		stop(hosts["n2"])
		if !withManifest {
			w.dropManifest(hosts["n2"])
		}
		e := etcdView(t, "n0", names3...)
		down(t, e, "n2")
		return w, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: e, Now: fixedNow}
	}
	checkAdd := func(t *testing.T, w *world, st Stage) {
		t.Helper()
		if st.Name != "add member n2" || st.Rollout != OneAtATime {
			t.Errorf("second stage %q, %s; want \"add member n2\", %s", st.Name, st.Rollout, OneAtATime)
		}
		steps := stageOps(st, "n2")
		_, i := findOp(steps, isKind(ops.KindAddLearner))
		if i < 0 {
			t.Fatalf("no add-learner: %v", kinds(steps))
		}
		for _, op := range steps[:i] {
			if op, ok := op.(ops.Write); ok && op.Path == w.manifestPath() {
				t.Errorf("the manifest is written before add-learner")
			}
		}
		if diff := cmp.Diff([]ops.Kind{ops.KindAddLearner, ops.KindWrite, ops.KindWaitMember, ops.KindPromote, ops.KindWaitCluster}, kindsOnly(steps[i:])); diff != "" {
			t.Fatalf("from add-learner on (-want +got):\n%s", diff)
		}
		if al := as[ops.AddLearner](t, steps[i]); al.PeerURL != peerOf("n2") {
			t.Errorf("add-learner at %s, want %s", al.PeerURL, peerOf("n2"))
		}
		mw := as[ops.Write](t, steps[i+1])
		if mw.Path != w.manifestPath() {
			t.Fatalf("after add-learner, write of %s, want the manifest", mw.Path)
		}
		m := facts.ParseManifest(mw.Change.File.Data)
		want := "n0=https://192.0.2.10:2380,n1=https://192.0.2.11:2380,n2=https://192.0.2.12:2380"
		if m.InitialClusterState != manifests.StateExisting || m.InitialCluster != want {
			t.Errorf("manifest: state %q, initial cluster %q; want existing, %s", m.InitialClusterState, m.InitialCluster, want)
		}
		if strings.Contains(m.InitialCluster, etcdclient.FormatID(idOf(t, "n2"))) {
			t.Errorf("the initial cluster names the old member's ID: %s", m.InitialCluster)
		}
		if wc := as[ops.WaitCluster](t, steps[len(steps)-1]); !slices.Equal(wc.Members, []string{"n0", "n1", "n2"}) {
			t.Errorf("wait-cluster for %v, want [n0 n1 n2]", wc.Members)
		}
	}
	for _, withManifest := range []bool{true, false} {
		name := "failed member without its manifest"
		if withManifest {
			name = "failed member with its manifest"
		}
		t.Run(name, func(t *testing.T) {
			w, in := failed(t, withManifest)
			p := mustPlan(t)(Replace(in, "n2", false))
			if len(p.Stages) != 2 {
				t.Fatalf("%d stages, want 2:\n%s", len(p.Stages), planText(p))
			}
			rm := p.Stages[0]
			if rm.Name != "remove the failed member n2" {
				t.Errorf("first stage %q", rm.Name)
			}
			want := []string{string(ops.KindRemoveMember)}
			if withManifest {
				want = append(want, string(ops.KindStopEtcd))
			}
			steps := stageOps(rm, "n2")
			if diff := cmp.Diff(want, kinds(steps)); diff != "" {
				t.Errorf("first stage operations (-want +got):\n%s", diff)
			}
			if len(steps) > 0 && as[ops.RemoveMember](t, steps[0]).MemberID != etcdclient.FormatID(idOf(t, "n2")) {
				t.Errorf("remove-member %s, want %s", as[ops.RemoveMember](t, steps[0]).MemberID, etcdclient.FormatID(idOf(t, "n2")))
			}
			checkAdd(t, w, p.Stages[1])
		})
	}
	t.Run("healthy member", func(t *testing.T) {
		w := newWorld(t, 3)
		in := Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: w.allBootstrapped(t), Etcd: etcdView(t, "n0", names3...), Now: fixedNow}
		p, err := checked(t)(Replace(in, "n2", false))
		re := mustRefuse(t, p, err)
		if !slices.ContainsFunc(re.Refusals, func(r Refusal) bool { return r.Host == "n2" && strings.Contains(r.Reason, "--force") }) {
			t.Errorf("refusal does not mention --force:\n%v", err)
		}
		p = mustPlan(t)(Replace(in, "n2", true))
		if len(p.Stages) != 2 {
			t.Fatalf("%d stages, want 2:\n%s", len(p.Stages), planText(p))
		}
		// A healthy voter hands leadership over before it goes.
		want := []string{string(ops.KindMoveLeader), string(ops.KindRemoveMember), string(ops.KindStopEtcd), "backup " + w.c.Spec.Etcd.DataDir}
		if diff := cmp.Diff(want, kinds(stageOps(p.Stages[0], "n2"))); diff != "" {
			t.Errorf("first stage operations (-want +got):\n%s", diff)
		}
		checkAdd(t, w, p.Stages[1])
	})
}
