package plan

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

// A running member whose manifest changes is marked pending before
// anything of it changes and cleared only once it is back: its restart
// carries a rollback to the manifest the host has, and its new process has
// the health gate to run and answer.
func TestBuildMarksAManifestRestartUntilTheMemberIsBack(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	w2 := w.changed(t, 3, `extraArgs: {quota-backend-bytes: "8589934592"}`)
	p := mustBuild(t, Input{Cluster: w2.c, Runtime: rtOf(w2.c), PKI: w2.pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow})
	for _, n := range names3 {
		steps := opsOf(p, n)
		want := []string{"mark " + facts.PendingEtcdRestart, "write " + kubeadmPath, string(ops.KindRestartEtcd), string(ops.KindWaitMember), "unmark " + facts.PendingEtcdRestart, string(ops.KindWaitCluster)}
		if diff := cmp.Diff(want, kinds(steps)); diff != "" {
			t.Errorf("%s: operations (-want +got):\n%s", n, diff)
			continue
		}
		r := as[ops.RestartEtcd](t, steps[2])
		if !r.Disruptive || r.Rollback == nil || string(r.Rollback.Data) == string(r.Change.File.Data) ||
			facts.ParseManifest(r.Rollback.Data).Flags["quota-backend-bytes"] != "" || r.RollbackRetry == nil {
			t.Errorf("%s: restart %+v, want a rollback to the manifest as the host has it", n, r)
		}
		if wm := as[ops.WaitMember](t, steps[3]); !wm.Gated || !wm.NewProcess {
			t.Errorf("%s: wait %+v, want the new process within the health gate", n, wm)
		}
	}
}

// A member a cut run was restarting (its marker there, the member down) is
// waited for and repaired before any other restarts, instead of counting
// against quorum; a member down without the marker still does.
func TestBuildWaitsForAMemberACutRunWasRestarting(t *testing.T) {
	w, hosts, e := sanChange(t)
	hosts["n2"].Pending = []string{facts.PendingEtcdRestart}
	stop(hosts["n2"])
	down(t, e, "n2")
	p := mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: e, Now: fixedNow})
	if len(p.Stages) != 1 {
		t.Fatalf("%d stages:\n%s", len(p.Stages), planText(p))
	}
	st := p.Stages[0]
	if order := stageHosts(st); !slices.Equal(order, []string{"n2", "n0", "n1"}) {
		t.Errorf("order %v, want n2 first (repaired), the leader n1 last", order)
	}
	steps := stageOps(st, "n2")
	k := kinds(steps)
	if k[0] != string(ops.KindAwaitRestart) || slices.Index(k, string(ops.KindWaitMember)) > slices.Index(k, "unmark "+facts.PendingEtcdRestart) {
		t.Errorf("n2: %v, want the wait for it first and its marker cleared once it is back", k)
	}
	if a := as[ops.AwaitRestart](t, steps[0]); a.Member != "n2" || a.Marker != facts.PendingEtcdRestart {
		t.Errorf("n2: %+v", a)
	}
	if r, _ := first[ops.RestartEtcd](steps); r.Disruptive || r.Rollback != nil {
		t.Errorf("n2's repair %+v: nothing runs there to put back", r)
	}
	if wm, _ := first[ops.WaitMember](steps); wm.Gated {
		t.Errorf("n2's wait %+v: a member that did not run has no gate to meet", wm)
	}

	// Its manifest held back by the cut restart: nothing would start it,
	// so no wait; the held manifest is written back as it was.
	held := hosts["n2"].Manifest
	delete(hosts["n2"].Files, w.manifestPath())
	p = mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: e, Now: fixedNow})
	steps = opsOf(p, "n2")
	if _, i := first[ops.AwaitRestart](steps); i >= 0 {
		t.Errorf("n2 with its manifest held back: %v", kinds(steps))
	}
	if wr, i := findOp(steps, isWriteOf(w.manifestPath())); i < 0 || string(wr.(ops.Write).Change.File.Data) != string(held.Data) || !slices.ContainsFunc(steps[i:], isKind(ops.KindRun)) {
		t.Errorf("n2: %v; want the held manifest written back as it was, then the held copy removed", kinds(steps))
	}

	// Its manifest gone, nothing would start it: no wait, its manifest
	// is written back.
	w.dropManifest(hosts["n2"])
	p = mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: e, Now: fixedNow})
	steps = opsOf(p, "n2")
	if _, i := first[ops.AwaitRestart](steps); i >= 0 || !slices.Contains(writtenPaths(steps), w.manifestPath()) {
		t.Errorf("n2 without a manifest: %v", kinds(steps))
	}

	// Without the marker, n2 is down for reasons of its own.
	hosts["n2"].Pending = nil
	p, err := build(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: e, Now: fixedNow})
	re := mustRefuse(t, p, err)
	if len(re.Refusals) != 2 || !strings.Contains(re.Error(), "would leave 1 of 3 voting members healthy") {
		t.Errorf("without the marker: %v", err)
	}
}
