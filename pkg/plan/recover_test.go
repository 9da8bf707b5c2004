package plan

// Scenarios of `etcdadm recover`, and of apply once a recovery dropped a
// host that comes back later.

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/runtime"
	"github.com/etcdadm-io/etcdadm/pkg/runtime/kubelet"
	"github.com/etcdadm-io/etcdadm/pkg/runtime/systemd"
)

// lostView is what etcd says once quorum is lost for good: a member's own
// (serializable) list of every named member; the members of indexes
// answer their status, without a leader, with that raft index; the
// others do not answer.
func lostView(t *testing.T, indexes map[string]uint64, names ...string) *facts.Cluster {
	t.Helper()
	e := etcdView(t, "", names...)
	e.Serializable = true
	for _, n := range names {
		i, ok := indexes[n]
		if !ok {
			down(t, e, n)
			continue
		}
		st := e.Status[idOf(t, n)]
		st.Healthy, st.RaftIndex, st.LeaderID, st.Error = false, i, 0, "no leader: the member cannot reach a quorum of its peers"
		e.Status[idOf(t, n)] = st
	}
	// As gather confirms it: no leader named in two reads.
	e.QuorumLost, e.QuorumWhy = true, "no member named a leader in two reads 3s apart"
	return e
}

// lostQuorum is three hosts as brought up; n1 and n2's members are dead
// (stopped, their data wiped) and n0 runs alone with the given raft index.
func lostQuorum(t *testing.T, w *world) Input {
	t.Helper()
	hosts := w.allBootstrapped(t)
	for _, n := range []string{"n1", "n2"} {
		stop(hosts[n])
		dropData(hosts[n])
		w.dropManifest(hosts[n])
	}
	return Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: lostView(t, map[string]uint64{"n0": 1500}, names3...), Now: fixedNow}
}

func stageNames(p *Plan) []string {
	var out []string
	for _, st := range p.Stages {
		out = append(out, st.Name)
	}
	return out
}

// wantStages fails the test unless p's stages are names, in order.
func wantStages(t *testing.T, p *Plan, names ...string) {
	t.Helper()
	if diff := cmp.Diff(names, stageNames(p)); diff != "" {
		t.Fatalf("stages (-want +got):\n%s\n%s", diff, planText(p))
	}
}

func hasWarning(p *Plan, parts ...string) bool {
	return slices.ContainsFunc(p.Warnings, func(w string) bool {
		for _, s := range parts {
			if !strings.Contains(w, s) {
				return false
			}
		}
		return true
	})
}

func refusedWith(t *testing.T, p *Plan, err error, host string, parts ...string) {
	t.Helper()
	re := mustRefuse(t, p, err)
	if !slices.ContainsFunc(re.Refusals, func(r Refusal) bool {
		if r.Host != host {
			return false
		}
		for _, s := range parts {
			if !strings.Contains(r.Reason, s) {
				return false
			}
		}
		return true
	}) {
		t.Errorf("no refusal for %q saying %q:\n%v", host, parts, err)
	}
}

// The kept data is --from's, or the answering member's with the highest
// raft index; every member's index is told.
func TestRecoverSource(t *testing.T) {
	setup := func(t *testing.T) Input {
		w := newWorld(t, 3)
		hosts := w.allBootstrapped(t)
		stop(hosts["n2"])
		return Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Now: fixedNow,
			Etcd: lostView(t, map[string]uint64{"n0": 1200, "n1": 1250}, names3...)}
	}
	source := func(t *testing.T, p *Plan) string {
		t.Helper()
		for _, st := range p.Stages {
			if strings.Contains(st.Name, "--force-new-cluster") && strings.HasPrefix(st.Name, "start ") {
				return st.Hosts[0].Host
			}
		}
		t.Fatalf("no start with --force-new-cluster:\n%s", planText(p))
		return ""
	}
	t.Run("highest raft index", func(t *testing.T) {
		p := mustPlan(t)(Recover(setup(t), ""))
		if got := source(t, p); got != "n1" {
			t.Errorf("kept %s, want n1 (raft index 1250)", got)
		}
		if !hasWarning(p, "raft indexes", "n0 1200 (50 behind)", "n1 1250 (kept)", "n2 unknown, not running") {
			t.Errorf("warnings %q do not give every member's raft index", p.Warnings)
		}
	})
	t.Run("--from", func(t *testing.T) {
		p := mustPlan(t)(Recover(setup(t), "n0"))
		if got := source(t, p); got != "n0" {
			t.Errorf("kept %s, want n0", got)
		}
		if !hasWarning(p, "n1 1250 (50 ahead: lost)", "n0 1200 (kept)") {
			t.Errorf("warnings %q do not say what n1 had beyond n0 is lost", p.Warnings)
		}
		// A member that does not run can be named: its data is on disk.
		if got := source(t, mustPlan(t)(Recover(setup(t), "n2"))); got != "n2" {
			t.Errorf("kept %s, want n2", got)
		}
	})
	t.Run("none running", func(t *testing.T) {
		in := setup(t)
		stop(in.Hosts["n0"])
		stop(in.Hosts["n1"])
		in.Etcd = &facts.Cluster{ListError: "no member runs", QuorumLost: true, QuorumWhy: "no member runs: nothing listens on port 2379"}
		p, err := checked(t)(Recover(in, ""))
		refusedWith(t, p, err, "", "no member runs", "--from NAME")
		if p := mustPlan(t)(Recover(in, "n1")); source(t, p) != "n1" {
			t.Errorf("with --from n1 and no member running: kept %s", source(t, p))
		}
	})
	t.Run("a learner", func(t *testing.T) {
		in := setup(t)
		learner(t, in.Etcd, "n1")
		if got := source(t, mustPlan(t)(Recover(in, ""))); got != "n0" {
			t.Errorf("kept %s, want n0: a learner's data cannot lead", got)
		}
		p, err := checked(t)(Recover(in, "n1"))
		refusedWith(t, p, err, "n1", "is a learner", "--from")
	})
	t.Run("bad --from", func(t *testing.T) {
		in := setup(t)
		p, err := checked(t)(Recover(in, "n9"))
		refusedWith(t, p, err, "", "--from n9", "no such host", "n0, n1, n2")
		delete(in.Hosts, "n1")
		p, err = checked(t)(Recover(in, "n1"))
		refusedWith(t, p, err, "n1", "--from n1", "cannot be reached")
		in = setup(t)
		dropData(in.Hosts["n2"])
		p, err = checked(t)(Recover(in, "n2"))
		refusedWith(t, p, err, "n2", "--from n2", "holds no etcd member")
	})
}

// A cluster with quorum is not recovered, whatever --from says; nor is one
// whose member still follows a leader.
func TestRecoverRefusedWithQuorum(t *testing.T) {
	w := newWorld(t, 3)
	e := etcdView(t, "n0", names3...)
	unhealthy(t, e, "n2")
	in := Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: w.allBootstrapped(t), Etcd: e, Now: fixedNow}
	for _, from := range []string{"", "n1"} {
		p, err := checked(t)(Recover(in, from))
		refusedWith(t, p, err, "", "the cluster has quorum (2 of 3", "member replace")
	}
	in.Etcd = lostView(t, map[string]uint64{"n0": 10, "n1": 10}, names3...)
	st := in.Etcd.Status[idOf(t, "n1")]
	st.LeaderID = idOf(t, "n2")
	in.Etcd.Status[idOf(t, "n1")] = st
	in.Etcd.QuorumLost, in.Etcd.QuorumWhy = false, ""
	p, err := checked(t)(Recover(in, ""))
	refusedWith(t, p, err, "", "follows leader", "run again")
	// Slow members that could hold a quorum of their own: not confirmed.
	in.Etcd.QuorumWhy = "no member that answered named a leader, but n2 took the connection without answering"
	st.LeaderID = 0
	in.Etcd.Status[idOf(t, "n1")] = st
	p, err = checked(t)(Recover(in, ""))
	refusedWith(t, p, err, "", "not confirmed", "n2 took the connection", "run again")
}

// The stages, in order: the record on the kept host, every member stopped,
// the kept data started alone with --force-new-cluster, restarted without
// it, then each other host added as a learner and promoted before the
// next, its old data moved aside, then the record cleared.
func TestRecoverStages(t *testing.T) {
	w := newWorld(t, 3)
	in := lostQuorum(t, w)
	// n1's member is dead but its data is still there.
	in.Hosts["n1"] = w.bootstrapped(t, "n1")
	stop(in.Hosts["n1"])
	p := mustPlan(t)(Recover(in, "n0"))
	wantStages(t, p,
		"record the recovery on n0",
		"stop every member",
		"start n0 alone with --force-new-cluster",
		"restart n0 without --force-new-cluster",
		"add member n1",
		"add member n2",
		"finish the recovery",
	)
	rec := stageOps(p.Stages[0], "n0")
	if diff := cmp.Diff([]string{"mark recover", "mark rejoin-n1", "mark rejoin-n2"}, kinds(rec)); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
	// n1 holds a manifest: stopped with n0; n2 has none and runs nothing.
	if got := stageHosts(p.Stages[1]); !slices.Equal(got, []string{"n0", "n1"}) {
		t.Errorf("stopped %v, want [n0 n1]", got)
	}
	for _, ho := range p.Stages[1].Hosts {
		if diff := cmp.Diff([]ops.Kind{ops.KindStopEtcd}, kindsOnly(ho.Ops)); diff != "" || !ho.Ops[0].Meta().Disruptive {
			t.Errorf("%s: %v, want one disruptive stop-etcd", ho.Host, kinds(ho.Ops))
		}
	}
	fnc := p.Stages[2]
	if fnc.Rollout != AllAtOnce || !slices.Equal(fnc.Wait, []string{"n0"}) {
		t.Errorf("%q: %s, wait %v; want all at once, then n0 healthy", fnc.Name, fnc.Rollout, fnc.Wait)
	}
	start, _ := first[ops.RestartEtcd](stageOps(fnc, "n0"))
	if start.Change == nil || start.Change.Path != w.manifestPath() {
		t.Fatalf("force-new-cluster start %+v: want the manifest", start)
	}
	if m := facts.ParseManifest(start.Change.File.Data); m.Flags["force-new-cluster"] != "true" {
		t.Errorf("the first start's manifest has no --force-new-cluster: %v", m.Flags)
	}
	if start.Retry == nil || facts.ParseManifest(start.Retry.Data).Flags["force-new-cluster"] != "true" {
		t.Errorf("the first start's retry has no --force-new-cluster")
	}
	restart := stageOps(p.Stages[3], "n0")
	if diff := cmp.Diff([]ops.Kind{ops.KindRestartEtcd, ops.KindWaitMember}, kindsOnly(restart)); diff != "" {
		t.Fatalf("restart (-want +got):\n%s", diff)
	}
	rs := as[ops.RestartEtcd](t, restart[0])
	if m := facts.ParseManifest(rs.Change.File.Data); m.Flags["force-new-cluster"] != "" || !rs.Disruptive || !rs.Change.Writes() {
		t.Errorf("restart: flags %v, disruptive %v, writes %v; want no --force-new-cluster, a disruptive write", m.Flags, rs.Disruptive, rs.Change.Writes())
	}
	if wm := as[ops.WaitMember](t, restart[1]); !wm.NewProcess {
		t.Error("the restart does not wait for a new process")
	}
	// One learner at a time: added, started, caught up and promoted, then
	// the next; its record cleared on n0 once it is back.
	for i, n := range []string{"n1", "n2"} {
		st := p.Stages[4+i]
		if st.Rollout != OneAtATime || st.Quorum != facts.Quorum(1+i) {
			t.Errorf("%q: %s, quorum %d; want one at a time, quorum %d", st.Name, st.Rollout, st.Quorum, facts.Quorum(1+i))
		}
		steps := stageOps(st, n)
		_, al := findOp(steps, isKind(ops.KindAddLearner))
		_, pr := findOp(steps, isKind(ops.KindPromote))
		if al < 0 || pr < al {
			t.Fatalf("%s: %v; want add-learner, then promote", n, kinds(steps))
		}
		if bk, i := findOp(steps, isKind(ops.KindBackup)); n == "n1" && (i < 0 || i > al || as[ops.Backup](t, bk).Path != w.c.Spec.Etcd.DataDir) {
			t.Errorf("n1's old data is not moved aside before it joins: %v", kinds(steps))
		}
		if bk, i := findOp(steps, isKind(ops.KindBackup)); i >= 0 && as[ops.Backup](t, bk).Keep != facts.KeptPreRecovery {
			t.Errorf("%s's old data is not kept for good: %+v", n, bk)
		}
		if _, i := findOp(steps, isKind(ops.KindStopEtcd)); i >= 0 {
			t.Errorf("%s is stopped again while joining: %v", n, kinds(steps))
		}
		mw, _ := first[ops.Write](steps[al:])
		m := facts.ParseManifest(mw.Change.File.Data)
		wantIC := "n0=" + peerOf("n0")
		if n == "n2" {
			wantIC += ",n1=" + peerOf("n1")
		}
		wantIC += "," + n + "=" + peerOf(n)
		if mw.Path != w.manifestPath() || m.InitialClusterState != manifests.StateExisting || m.InitialCluster != wantIC || m.Flags["force-new-cluster"] != "" {
			t.Errorf("%s's manifest: %s, %s, %s, %v; want existing, %s", n, mw.Path, m.InitialClusterState, m.InitialCluster, m.Flags["force-new-cluster"], wantIC)
		}
		if diff := cmp.Diff([]string{"unmark rejoin-" + n}, kinds(stageOps(st, "n0"))); diff != "" {
			t.Errorf("%s's record (-want +got):\n%s", n, diff)
		}
	}
	if diff := cmp.Diff([]string{"unmark recover"}, kinds(stageOps(p.Stages[6], "n0"))); diff != "" {
		t.Errorf("last stage (-want +got):\n%s", diff)
	}
	if n := len(p.Warnings); n != 1 {
		t.Errorf("warnings %q, want the raft indexes only", p.Warnings)
	}
}

// A host that cannot be reached is left out, with how it comes back; its
// record stays.
func TestRecoverLeavesDeadHostsOut(t *testing.T) {
	w := newWorld(t, 3)
	in := lostQuorum(t, w)
	delete(in.Hosts, "n2")
	p := mustPlan(t)(Recover(in, ""))
	if slices.Contains(stageNames(p), "add member n2") || len(opsOf(p, "n2")) > 0 {
		t.Errorf("n2 cannot be reached yet has operations:\n%s", planText(p))
	}
	if !slices.Contains(stageNames(p), "add member n1") {
		t.Errorf("n1 is not added back:\n%s", planText(p))
	}
	if !hasWarning(p, "n2 cannot be reached", "left out", "`etcdadm apply`", "/var/lib/etcdadm/backup") {
		t.Errorf("no warning saying how n2 comes back: %q", p.Warnings)
	}
	if !slices.Contains(kinds(opsOf(p, "n0")), "mark rejoin-n2") || slices.Contains(kinds(opsOf(p, "n0")), "unmark rejoin-n2") {
		t.Errorf("n2's record: %v; want it marked and kept", kinds(opsOf(p, "n0")))
	}
}

// A run cut after the first start goes on: the cluster has quorum again
// (n0 alone), the record says a recovery is in progress.
func TestRecoverContinues(t *testing.T) {
	w := newWorld(t, 3)
	in := lostQuorum(t, w)
	n0 := in.Hosts["n0"]
	n0.Pending = []string{facts.PendingRecover, facts.PendingRejoin + "n1", facts.PendingRejoin + "n2"}
	flagged := Bootstrap(w.c)
	flagged.ForceNewCluster = true
	running := w.asPlanned(t, "n0", flagged)
	running.Pending = n0.Pending
	in.Hosts["n0"] = running
	in.Etcd = etcdView(t, "n0", "n0")
	t.Run("after the first start", func(t *testing.T) {
		p := mustPlan(t)(Recover(in, ""))
		wantStages(t, p, "restart n0 without --force-new-cluster", "add member n1", "add member n2", "finish the recovery")
		rs := as[ops.RestartEtcd](t, stageOps(p.Stages[0], "n0")[0])
		if rs.Change.Kind != Update || facts.ParseManifest(rs.Change.File.Data).Flags["force-new-cluster"] != "" {
			t.Errorf("restart: %s of a manifest with flags %v", rs.Change.Kind, facts.ParseManifest(rs.Change.File.Data).Flags)
		}
	})
	t.Run("after n1 joined", func(t *testing.T) {
		in := in
		in.Hosts = map[string]*facts.Host{}
		for k, v := range lostQuorum(t, w).Hosts {
			in.Hosts[k] = v
		}
		in.Hosts["n0"] = w.bootstrapped(t, "n0")
		in.Hosts["n0"].Pending = []string{facts.PendingRecover, facts.PendingRejoin + "n2"}
		in.Hosts["n1"] = w.asPlanned(t, "n1", Member{InitialCluster: "n0=" + peerOf("n0") + ",n1=" + peerOf("n1"), State: manifests.StateExisting})
		in.Etcd = etcdView(t, "n0", "n0", "n1")
		p := mustPlan(t)(Recover(in, ""))
		wantStages(t, p, "add member n2", "finish the recovery")
		if st := p.Stages[0]; st.Quorum != 2 || !slices.Equal(as[ops.WaitCluster](t, stageOps(st, "n2")[len(stageOps(st, "n2"))-1]).Members, []string{"n0", "n1", "n2"}) {
			t.Errorf("adding n2: quorum %d, ops %v", st.Quorum, kinds(stageOps(st, "n2")))
		}
		// A finished recovery is not one in progress: with quorum, refused.
		in.Hosts["n0"].Pending = nil
		p, err := checked(t)(Recover(in, ""))
		refusedWith(t, p, err, "", "has quorum")
	})
	t.Run("--from another host", func(t *testing.T) {
		p, err := checked(t)(Recover(in, "n1"))
		refusedWith(t, p, err, "n1", "recovery from n0's data has not finished", "without --from")
	})
	t.Run("cut before the first start", func(t *testing.T) {
		in := lostQuorum(t, w)
		in.Hosts["n0"].Pending = []string{facts.PendingRecover, facts.PendingRejoin + "n1", facts.PendingRejoin + "n2"}
		stop(in.Hosts["n0"])
		w.dropManifest(in.Hosts["n0"])
		in.Etcd = &facts.Cluster{ListError: "no member runs", QuorumLost: true, QuorumWhy: "no member runs: nothing listens on port 2379"}
		p := mustPlan(t)(Recover(in, ""))
		wantStages(t, p, "start n0 alone with --force-new-cluster", "restart n0 without --force-new-cluster", "add member n1", "add member n2", "finish the recovery")
	})
}

// A member the inventory does not name that still runs, or another
// cluster's data, refuses the recovery.
func TestRecoverRefusesStrangers(t *testing.T) {
	w := newWorld(t, 3)
	in := lostQuorum(t, w)
	ghost := etcdclient.Member{ID: idOf(t, "ghost"), Name: "ghost", PeerURLs: []string{peerOf("ghost")}, ClientURLs: []string{clientOf("ghost")}}
	in.Etcd.Members = append(in.Etcd.Members, ghost)
	in.Etcd.Status[ghost.ID] = etcdclient.MemberStatus{Name: "ghost", Endpoint: clientOf("ghost"), ID: ghost.HexID(), MemberID: ghost.ID, RaftIndex: 3}
	p, err := checked(t)(Recover(in, ""))
	refusedWith(t, p, err, "", "ghost", "not in the inventory but runs")
	in = lostQuorum(t, w)
	in.Hosts["n2"] = w.bootstrapped(t, "n2")
	stop(in.Hosts["n2"])
	in.Hosts["n2"].DataDir.ClusterID = 0x1234
	p, err = checked(t)(Recover(in, ""))
	refusedWith(t, p, err, "n2", "another cluster", "etcdadm reset n2")
}

// The recovery through the systemd runtime: the services stop, and the
// kept data starts with the flag in its environment file.
func TestSystemdRecover(t *testing.T) {
	w := newSystemdWorld(t, 3)
	hosts := w.allSystemd(t)
	for _, n := range []string{"n1", "n2"} {
		stop(hosts[n])
		hosts[n].EtcdActive = "inactive"
	}
	in := Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Now: fixedNow, Platform: testPlatform,
		Etcd: lostView(t, map[string]uint64{"n0": 7}, names3...)}
	p := mustPlan(t)(Recover(in, ""))
	stop := as[ops.StopEtcd](t, stageOps(p.Stages[1], "n0")[0])
	if stop.Command != systemd.CmdStopEtcd {
		t.Errorf("stop %q, want %q", stop.Command, systemd.CmdStopEtcd)
	}
	start, _ := first[ops.RestartEtcd](stageOps(p.Stages[2], "n0"))
	if start.Command != systemd.CmdRestartEtcd || start.Path != "/etc/etcd/etcd.env" {
		t.Fatalf("first start %+v: want the environment file and %q", start, systemd.CmdRestartEtcd)
	}
	if m := facts.ParseEnvFile(start.Change.File.Data); m.Flags["force-new-cluster"] != "true" {
		t.Errorf("the first start's environment file has no --force-new-cluster: %s", start.Change.File.Data)
	}
	rs := as[ops.RestartEtcd](t, stageOps(p.Stages[3], "n0")[0])
	if m := facts.ParseEnvFile(rs.Change.File.Data); m.Flags["force-new-cluster"] != "" || !rs.Change.Writes() || rs.Command != systemd.CmdRestartEtcd {
		t.Errorf("restart without the flag: %+v", rs)
	}
}

// Both runtimes put the flag in the member's start file, after its own
// flags, only when the member starts with it.
func TestForceNewClusterStartFiles(t *testing.T) {
	w := newWorld(t, 3)
	h := w.host(t, "n0")
	m := Bootstrap(w.c)
	plain, err := kubelet.ManifestFile(w.c, h, m)
	if err != nil {
		t.Fatal(err)
	}
	m.ForceNewCluster = true
	flagged, err := kubelet.ManifestFile(w.c, h, m)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(plain.Data), "force-new-cluster") {
		t.Error("a plain manifest has --force-new-cluster")
	}
	if !strings.Contains(string(flagged.Data), "- "+runtime.ForceNewClusterFlag+"\n") || facts.ParseManifest(flagged.Data).Flags["force-new-cluster"] != "true" {
		t.Errorf("the flagged manifest:\n%s", flagged.Data)
	}
	sw := newSystemdWorld(t, 3)
	env, err := systemd.EnvFile(sw.c, sw.host(t, "n0"), m)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(env.Data), " "+runtime.ForceNewClusterFlag+"\"") || facts.ParseEnvFile(env.Data).Flags["force-new-cluster"] != "true" {
		t.Errorf("the flagged environment file:\n%s", env.Data)
	}
}

// Once a recovery dropped n2 and it comes back with its old data, apply
// moves that data aside and adds n2 again; without the recovery's record,
// the old data is refused as before.
func TestApplyRejoinsADroppedHost(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	hosts["n0"].Pending = []string{facts.PendingRejoin + "n2"}
	hosts["n1"] = w.asPlanned(t, "n1", Member{InitialCluster: "n0=" + peerOf("n0") + ",n1=" + peerOf("n1"), State: manifests.StateExisting})
	e := etcdView(t, "n0", "n0", "n1")
	in := Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: e, Now: fixedNow}
	p := mustBuild(t, in)
	wantStages(t, p, "add member n2")
	steps := stageOps(p.Stages[0], "n2")
	if len(steps) < 3 || steps[0].Kind() != ops.KindStopEtcd || as[ops.Backup](t, steps[1]).Path != w.c.Spec.Etcd.DataDir {
		t.Fatalf("n2: %v; want its old member stopped and its data moved aside first", kinds(steps))
	}
	if bk := as[ops.Backup](t, steps[1]); bk.Keep != facts.KeptPreRecovery || bk.Ref != "recover-from-n0" {
		t.Errorf("n2's old data is not kept for good: %+v", bk)
	}
	_, al := findOp(steps, isKind(ops.KindAddLearner))
	mw, _ := first[ops.Write](steps[al:])
	if m := facts.ParseManifest(mw.Change.File.Data); m.InitialClusterState != manifests.StateExisting || !strings.HasPrefix(m.InitialCluster, "n0=") || strings.Count(m.InitialCluster, "=") != 3 {
		t.Errorf("n2's manifest: %s, %s", m.InitialClusterState, m.InitialCluster)
	}
	if diff := cmp.Diff([]string{"unmark rejoin-n2"}, kinds(stageOps(p.Stages[0], "n0"))); diff != "" {
		t.Errorf("n2's record (-want +got):\n%s", diff)
	}
	hosts["n0"].Pending = nil
	p, err := build(t, in)
	refusedWith(t, p, err, "n2", "`etcdadm reset n2`")
	// Another cluster's member is not taken for this one's, nor is reset
	// offered for it: the inventory's address is more likely wrong.
	hosts["n0"].Pending = []string{facts.PendingRejoin + "n2"}
	hosts["n2"].DataDir.ClusterID = 0x1234
	p, err = build(t, in)
	refusedWith(t, p, err, "n2", "runs a member of another cluster", "check the inventory's address of n2")
	if strings.Contains(err.Error(), "reset") {
		t.Errorf("reset offered for another cluster's member: %v", err)
	}
}

// While a recovery has not finished, apply refuses and says how to finish.
func TestApplyRefusedDuringRecovery(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	hosts["n0"].Pending = []string{facts.PendingRecover}
	p, err := build(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n0", "n0"), Now: fixedNow})
	refusedWith(t, p, err, "n0", "`etcdadm recover`")
}
