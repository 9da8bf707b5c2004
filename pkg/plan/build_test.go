package plan

// Scenarios of plan.Build: facts in, stages out. No network: the facts are
// made up by the helpers of facts_helpers_test.go.

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

var names3 = []string{"n0", "n1", "n2"}

// 1. Nothing anywhere: every host gets its files, then every member starts
// together as a new cluster of the whole inventory.
func TestBuildFreshCluster(t *testing.T) {
	for _, tc := range []struct {
		name string
		etcd *facts.Cluster
	}{
		{"etcd not asked", nil},
		{"no member answers", &facts.Cluster{ListError: "no member answered the member list: connection refused",
			Status: map[uint64]etcdclient.MemberStatus{}, Unanswered: map[string]etcdclient.MemberStatus{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The first run: the PKI is only computed, its CA is new.
			c := parseInventory(t, inventoryYAML(3, ""), t.TempDir())
			pki := computePKI(t, c)
			hosts := map[string]*facts.Host{}
			for _, n := range names3 {
				hosts[n] = emptyHost(n)
			}
			p := mustBuild(t, Input{Cluster: c, Runtime: rtOf(c), PKI: pki, Hosts: hosts, Etcd: tc.etcd, Now: fixedNow})
			if len(p.Stages) != 2 {
				t.Fatalf("%d stages, want 2:\n%s", len(p.Stages), planText(p))
			}
			prep, start := p.Stages[0], p.Stages[1]
			for _, st := range p.Stages {
				if st.Rollout != AllAtOnce {
					t.Errorf("stage %q is %s, want %s", st.Name, st.Rollout, AllAtOnce)
				}
			}
			if !strings.Contains(prep.Name, "prepare") {
				t.Errorf("first stage is %q, want the prepare stage", prep.Name)
			}
			if got := stageHosts(prep); !slices.Equal(got, names3) {
				t.Errorf("prepare stage hosts %v, want %v", got, names3)
			}
			if got := stageHosts(start); !slices.Equal(got, names3) {
				t.Errorf("start stage hosts %v, want %v", got, names3)
			}
			if !slices.Equal(start.Wait, names3) {
				t.Errorf("start stage waits for %v, want %v", start.Wait, names3)
			}
			boot := manifests.InitialCluster(c.Spec.Hosts)
			manifest := manifests.ManifestPath(c)
			for _, n := range names3 {
				hp, _ := p.FindHost(n)
				if hp.Member.InitialCluster != boot || hp.Member.State != manifests.StateNew {
					t.Errorf("%s starts as %+v, want %s, new", n, hp.Member, boot)
				}
				steps := stageOps(prep, n)
				var mkdirs []string
				for _, op := range steps {
					if op, ok := op.(ops.Mkdir); ok {
						mkdirs = append(mkdirs, op.Path)
						if i := slices.IndexFunc(hp.Dirs, func(d Dir) bool { return d.Path == op.Path }); i < 0 || hp.Dirs[i].Mode != op.Mode {
							t.Errorf("%s: mkdir %s with mode %04o, not as planned", n, op.Path, op.Mode)
						}
					}
				}
				if diff := cmp.Diff(sorted(dirPaths(*hp)), sorted(mkdirs)); diff != "" {
					t.Errorf("%s: directories made (-planned +made):\n%s", n, diff)
				}
				if diff := cmp.Diff(sorted(nonManifestFiles(*hp)), sorted(writtenPaths(steps))); diff != "" {
					t.Errorf("%s: files written while preparing (-planned +written):\n%s", n, diff)
				}
				_, mark := findOp(steps, isMark(ops.KindMark, facts.PendingKubeletRestart))
				_, reload := findOp(steps, isRun(CmdDaemonReload))
				_, restart := findOp(steps, isRun(CmdRestartKube))
				_, unmark := findOp(steps, isMark(ops.KindUnmark, facts.PendingKubeletRestart))
				if mark < 0 || !(mark < reload && reload < restart && restart < unmark) {
					t.Errorf("%s: want mark kubelet-restart, daemon-reload, restart kubelet, unmark in order; got %v", n, kinds(steps))
				}
				for i, op := range steps {
					if op, ok := op.(ops.Write); ok && strings.HasPrefix(op.Path, "/etc/systemd/") && !(mark < i && i < reload) {
						t.Errorf("%s: kubelet file %s written outside the marker", n, op.Path)
					}
				}
				sops := stageOps(start, n)
				if len(sops) != 1 || sops[0].Kind() != ops.KindWrite || as[ops.Write](t, sops[0]).Path != manifest {
					t.Fatalf("%s: start stage steps %v, want only the manifest's write", n, kinds(sops))
				}
				m := facts.ParseManifest(as[ops.Write](t, sops[0]).Change.File.Data)
				if m.Err != "" || m.InitialClusterState != manifests.StateNew || m.InitialCluster != boot || m.Name != n {
					t.Errorf("%s: manifest says name %q, state %q, initial cluster %q (%s); want %s, new, %s", n, m.Name, m.InitialClusterState, m.InitialCluster, m.Err, n, boot)
				}
				args := kubeadmArgs(plannedFile(t, p, n, kubeadmPath).Data)
				if args["initial-cluster"] != boot || args["initial-cluster-state"] != manifests.StateNew {
					t.Errorf("%s: kubeadmcfg.yaml says %v", n, args)
				}
			}
			if d := anyDisruptive(p); len(d) > 0 {
				t.Errorf("disruptive operations in a bring-up: %v", d)
			}
		})
	}
}

// 2. Every host as planned, every member a healthy voter: nothing to do.
func TestBuildSteadyState(t *testing.T) {
	w := newWorld(t, 3)
	p := mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: w.allBootstrapped(t), Etcd: etcdView(t, "n1", names3...), Now: fixedNow})
	if !p.Empty() {
		t.Errorf("plan is not empty:\n%s", planText(p))
	}
	for _, h := range p.Hosts {
		if ch := h.Changed(); len(ch) > 0 {
			t.Errorf("%s: changes %v", h.Name, ch)
		}
	}
	for _, warn := range p.Warnings {
		for _, n := range names3 {
			if strings.Contains(warn, n) {
				t.Errorf("warning about %s: %s", n, warn)
			}
		}
	}
}

// sanChange is scenario 3's input: a server SAN added to the inventory, the
// PKI recomputed in memory, the hosts as they were.
func sanChange(t *testing.T) (*world, map[string]*facts.Host, *facts.Cluster) {
	t.Helper()
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	w2 := w.changed(t, 3, "serverCertSANs: [etcd.example.com]")
	for _, n := range names3 {
		oldServer, _ := w.pki.Leaf(n, "etcd-server")
		newServer, _ := w2.pki.Leaf(n, "etcd-server")
		oldPeer, _ := w.pki.Leaf(n, "etcd-peer")
		newPeer, _ := w2.pki.Leaf(n, "etcd-peer")
		if bytes.Equal(oldServer.CertPEM, newServer.CertPEM) || !bytes.Equal(oldPeer.CertPEM, newPeer.CertPEM) {
			t.Fatalf("%s: the new SAN should reissue the server certificate only", n)
		}
	}
	return w2, hosts, etcdView(t, "n1", names3...)
}

// 3. A changed server certificate restarts every member, one at a time,
// behind a marker, the leader last.
func TestBuildServerSANChange(t *testing.T) {
	w, hosts, e := sanChange(t)
	p := mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: e, Now: fixedNow})
	if len(p.Stages) != 1 {
		t.Fatalf("%d stages, want 1:\n%s", len(p.Stages), planText(p))
	}
	st := p.Stages[0]
	if st.Name != "update members" || st.Rollout != OneAtATime || st.Quorum != 2 {
		t.Errorf("stage %q, %s, quorum %d; want \"update members\", %s, quorum 2", st.Name, st.Rollout, st.Quorum, OneAtATime)
	}
	order := stageHosts(st)
	if !slices.Equal(sorted(order), names3) || order[len(order)-1] != "n1" {
		t.Errorf("hosts in order %v, want all three with the leader n1 last", order)
	}
	manifest := w.manifestPath()
	for _, n := range names3 {
		steps := stageOps(st, n)
		want := []string{
			"mark " + facts.PendingEtcdRestart,
			"write /etc/kubernetes/pki/etcd/server.crt",
			"write /etc/kubernetes/pki/etcd/server.key",
			"write " + kubeadmPath,
			string(ops.KindRestartEtcd),
			string(ops.KindWaitMember),
			"unmark " + facts.PendingEtcdRestart,
			string(ops.KindWaitCluster),
		}
		if diff := cmp.Diff(want, kinds(steps)); diff != "" {
			t.Errorf("%s: operations (-want +got):\n%s", n, diff)
			continue
		}
		restart := as[ops.RestartEtcd](t, steps[4])
		if !restart.Disruptive || restart.Path != manifest || restart.Change == nil {
			t.Errorf("%s: restart op %+v, want a disruptive rewrite of %s", n, restart, manifest)
			continue
		}
		m := facts.ParseManifest(restart.Change.File.Data)
		if m.Restart != fixedStamp {
			t.Errorf("%s: restart annotation %q, want %q (Input.Now in RFC 3339, UTC)", n, m.Restart, fixedStamp)
		}
		if !cmp.Equal(m.Flags, hosts[n].Manifest.Flags) {
			t.Errorf("%s: the restart changes etcd's flags:\n%s", n, cmp.Diff(hosts[n].Manifest.Flags, m.Flags))
		}
		if restart.Change.OldSHA != hosts[n].Files[manifest].SHA256 || restart.Change.NewSHA != restart.Change.File.SHA256() {
			t.Errorf("%s: restart change sha %s -> %s is not the host's manifest to the new one", n, restart.Change.OldSHA, restart.Change.NewSHA)
		}
		if c := as[ops.Write](t, steps[1]).Change.Cert; c == nil || c.New == nil || !slices.Contains(c.New.SANs, "etcd.example.com") {
			t.Errorf("%s: the server certificate change does not show the new SAN: %+v", n, c)
		}
		if wm := as[ops.WaitMember](t, steps[5]); wm.Member != n || !wm.NewProcess || !wm.Gated {
			t.Errorf("%s: wait-member %+v, want %s's new process within the health gate", n, wm, n)
		}
		if rb := restart.Rollback; rb == nil || facts.ParseManifest(rb.Data).InitialCluster != hosts[n].Manifest.InitialCluster || !strings.HasSuffix(facts.ParseManifest(rb.Data).Restart, "(rolled back)") {
			t.Errorf("%s: the restart of a running member rolls back to its manifest as the host has it: %+v", n, restart.Rollback)
		}
		if wc := as[ops.WaitCluster](t, steps[7]); !slices.Equal(sorted(wc.Members), names3) {
			t.Errorf("%s: wait-cluster for %v, want %v", n, wc.Members, names3)
		}
	}
}

// 4. The same change with one member down: restarting a healthy one would
// cost quorum, so those restarts are refused.
func TestBuildServerSANChangeRefusedWithoutQuorumMargin(t *testing.T) {
	w, hosts, e := sanChange(t)
	unhealthy(t, e, "n2")
	stop(hosts["n2"])
	p, err := build(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: e, Now: fixedNow})
	re := mustRefuse(t, p, err)
	var refused []string
	for _, r := range re.Refusals {
		refused = append(refused, r.Host)
		if r.Host == "n0" || r.Host == "n1" {
			if !strings.Contains(r.Reason, "n2") || !strings.Contains(r.Reason, "quorum") {
				t.Errorf("%s: reason does not name n2 and the quorum: %s", r.Host, r.Reason)
			}
			if !strings.Contains(r.Reason, "1 of 3") {
				t.Errorf("%s: reason does not say 1 of 3 would be left: %s", r.Host, r.Reason)
			}
		}
	}
	if !slices.Equal(sorted(refused), []string{"n0", "n1"}) {
		t.Errorf("refused hosts %v, want [n0 n1]:\n%v", refused, err)
	}
}

// 5. A new empty host joins as a learner, and nothing else changes.
func TestBuildAddMember(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	w4 := w.changed(t, 4, "")
	hosts["n3"] = emptyHost("n3")
	p := mustBuild(t, Input{Cluster: w4.c, Runtime: rtOf(w4.c), PKI: w4.pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow})
	for _, n := range names3 {
		hp, _ := p.FindHost(n)
		if ch := hp.Changed(); len(ch) > 0 {
			t.Errorf("%s changes: %v", n, ch)
		}
		if steps := opsOf(p, n); len(steps) > 0 {
			t.Errorf("%s has operations: %v", n, kinds(steps))
		}
	}
	if len(p.Stages) != 1 {
		t.Fatalf("%d stages, want 1:\n%s", len(p.Stages), planText(p))
	}
	st := p.Stages[0]
	if st.Name != "add member n3" || st.Rollout != OneAtATime || !slices.Equal(stageHosts(st), []string{"n3"}) {
		t.Errorf("stage %q, %s, hosts %v; want \"add member n3\", %s, [n3]", st.Name, st.Rollout, stageHosts(st), OneAtATime)
	}
	steps := stageOps(st, "n3")
	hp, _ := p.FindHost("n3")
	_, i := findOp(steps, isKind(ops.KindAddLearner))
	if i < 0 {
		t.Fatalf("no add-learner: %v", kinds(steps))
	}
	prepare := steps[:i]
	for _, op := range prepare {
		if !slices.Contains([]ops.Kind{ops.KindMkdir, ops.KindWrite, ops.KindMark, ops.KindRun, ops.KindUnmark}, op.Kind()) {
			t.Errorf("before add-learner: %s", op)
		}
	}
	if diff := cmp.Diff(sorted(nonManifestFiles(*hp)), sorted(writtenPaths(prepare))); diff != "" {
		t.Errorf("files written before add-learner (-planned +written):\n%s", diff)
	}
	if _, j := findOp(prepare, isRun(CmdRestartKube)); j < 0 {
		t.Errorf("the kubelet is not restarted before add-learner: %v", kinds(prepare))
	}
	wantTail := []ops.Kind{ops.KindAddLearner, ops.KindWrite, ops.KindWaitMember, ops.KindPromote, ops.KindWaitCluster}
	if diff := cmp.Diff(wantTail, kindsOnly(steps[i:])); diff != "" {
		t.Fatalf("from add-learner on (-want +got):\n%s", diff)
	}
	if al := as[ops.AddLearner](t, steps[i]); al.Member != "n3" || al.PeerURL != "https://192.0.2.13:2380" {
		t.Errorf("add-learner %+v", al)
	}
	want := "n0=https://192.0.2.10:2380,n1=https://192.0.2.11:2380,n2=https://192.0.2.12:2380,n3=https://192.0.2.13:2380"
	if as[ops.Write](t, steps[i+1]).Path != w4.manifestPath() {
		t.Errorf("after add-learner, write of %s, want the manifest", as[ops.Write](t, steps[i+1]).Path)
	}
	m := facts.ParseManifest(as[ops.Write](t, steps[i+1]).Change.File.Data)
	if m.InitialClusterState != manifests.StateExisting || m.InitialCluster != want {
		t.Errorf("manifest: state %q, initial cluster %q; want existing, %s", m.InitialClusterState, m.InitialCluster, want)
	}
	if hp.Member.InitialCluster != want || hp.Member.State != manifests.StateExisting {
		t.Errorf("n3 starts as %+v", hp.Member)
	}
	args := kubeadmArgs(plannedFile(t, p, "n3", kubeadmPath).Data)
	if args["initial-cluster"] != want || args["initial-cluster-state"] != manifests.StateExisting {
		t.Errorf("kubeadmcfg.yaml says %v", args)
	}
	if wm := as[ops.WaitMember](t, steps[i+2]); wm.Member != "n3" {
		t.Errorf("wait-member %+v", wm)
	}
	if pr := as[ops.Promote](t, steps[i+3]); pr.Member != "n3" {
		t.Errorf("promote %+v", pr)
	}
	if wc := as[ops.WaitCluster](t, steps[i+4]); !slices.Equal(wc.Members, []string{"n0", "n1", "n2", "n3"}) {
		t.Errorf("wait-cluster for %v, want [n0 n1 n2 n3]", wc.Members)
	}
}

// 6. A running member's --initial-cluster and state are kept as its
// manifest has them, however unusual: etcd ignores them once it has data.
func TestBuildKeepsARunningMembersInitialCluster(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	unusual := manifests.InitialCluster([]config.Host{w.host(t, "n0"), w.host(t, "n1")})
	hosts["n0"] = w.asPlanned(t, "n0", Member{InitialCluster: unusual, State: manifests.StateExisting})
	p := mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow})
	hp, _ := p.FindHost("n0")
	if hp.Member.InitialCluster != unusual || hp.Member.State != manifests.StateExisting {
		t.Errorf("n0 starts as %+v, want %s, existing (kept)", hp.Member, unusual)
	}
	if ch := hp.Changed(); len(ch) > 0 {
		t.Errorf("n0 changes: %v", ch)
	}
	if steps := opsOf(p, "n0"); len(steps) > 0 {
		t.Errorf("n0 has operations: %v", kinds(steps))
	}
	if !p.Empty() {
		t.Errorf("plan is not empty:\n%s", planText(p))
	}
}

// 7. A member whose manifest was deleted, with its data: the manifest is
// written again (nothing runs, so nothing is restarted).
func TestBuildRepairsADeletedManifest(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	w.dropManifest(hosts["n1"])
	stop(hosts["n1"])
	e := etcdView(t, "n0", names3...)
	down(t, e, "n1")
	p := mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: e, Now: fixedNow})
	if len(p.Stages) != 1 {
		t.Fatalf("%d stages, want 1:\n%s", len(p.Stages), planText(p))
	}
	if hs := stageHosts(p.Stages[0]); !slices.Equal(hs, []string{"n1"}) {
		t.Errorf("stage hosts %v, want [n1]", hs)
	}
	steps := stageOps(p.Stages[0], "n1")
	if _, i := findOp(steps, isKind(ops.KindRestartEtcd)); i >= 0 {
		t.Errorf("restart-etcd for a member that does not run: %v", kinds(steps))
	}
	if d := anyDisruptive(p); len(d) > 0 {
		t.Errorf("disruptive operations: %v", d)
	}
	op, i := findOp(steps, isWriteOf(w.manifestPath()))
	if i < 0 {
		t.Fatalf("no write of the manifest: %v", kinds(steps))
	}
	if mop := as[ops.Write](t, op); mop.Change.Kind != Create {
		t.Errorf("manifest change %s, want create", mop.Change.Kind)
	}
	if diff := cmp.Diff([]ops.Kind{ops.KindWaitMember, ops.KindWaitCluster}, kindsOnly(steps[i+1:])); diff != "" {
		t.Errorf("after the manifest's write (-want +got):\n%s", diff)
	}
	for _, op := range steps[:i] {
		// The kubeadmcfg.yaml is rewritten too (state existing, the member
		// list's initial cluster) to match the restored manifest: it is
		// harmless but not asked for; only plain writes may come first.
		if op.Kind() != ops.KindWrite {
			t.Errorf("before the manifest's write: %s", op)
		} else {
			t.Logf("also written before the manifest: %s", op)
		}
	}
	if wc := as[ops.WaitCluster](t, steps[len(steps)-1]); !slices.Equal(sorted(wc.Members), names3) {
		t.Errorf("wait-cluster for %v, want %v", wc.Members, names3)
	}
}

// 8. The local PKI is not the hosts'.
func TestBuildRefusesAnotherPKI(t *testing.T) {
	t.Run("no local CA", func(t *testing.T) {
		w := newWorld(t, 3)
		hosts := w.allBootstrapped(t)
		c := parseInventory(t, inventoryYAML(3, ""), t.TempDir())
		pki := computePKI(t, c)
		if !pki.CACreated {
			t.Fatal("a PKI computed in an empty directory should make a CA")
		}
		p, err := build(t, Input{Cluster: c, Runtime: rtOf(c), PKI: pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow})
		re := mustRefuse(t, p, err)
		if !slices.ContainsFunc(re.Refusals, func(r Refusal) bool { return strings.Contains(r.Reason, "copy the PKI directory") }) {
			t.Errorf("no refusal says to copy the PKI directory:\n%v", err)
		}
	})
	t.Run("another CA", func(t *testing.T) {
		w := newWorld(t, 3)
		other := newWorld(t, 3)
		hosts := other.allBootstrapped(t)
		p, err := build(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow})
		re := mustRefuse(t, p, err)
		theirs, ours := Fingerprint(other.pki.CA.Cert), Fingerprint(w.pki.CA.Cert)
		for _, n := range names3 {
			i := slices.IndexFunc(re.Refusals, func(r Refusal) bool { return r.Host == n })
			if i < 0 {
				t.Errorf("%s is not refused:\n%v", n, err)
				continue
			}
			if r := re.Refusals[i].Reason; !strings.Contains(r, theirs) || !strings.Contains(r, ours) {
				t.Errorf("%s: reason lacks a fingerprint (%s, %s): %s", n, theirs, ours, r)
			}
		}
	})
}

// 9. A bring-up cut after the first member started: the others start with
// exactly its --initial-cluster, all at once, nothing stopped.
func TestBuildFinishesAnInterruptedBringUp(t *testing.T) {
	w := newWorld(t, 3)
	// An order the inventory would not give, to see it is copied.
	ic := manifests.InitialCluster([]config.Host{w.host(t, "n2"), w.host(t, "n0"), w.host(t, "n1")})
	boot := Member{InitialCluster: ic, State: manifests.StateNew}
	hosts := map[string]*facts.Host{"n0": w.asPlanned(t, "n0", boot)}
	for _, n := range []string{"n1", "n2"} {
		hf := w.asPlanned(t, n, boot)
		w.dropManifest(hf)
		stop(hf)
		dropData(hf)
		hosts[n] = hf
	}
	e := &facts.Cluster{ListFrom: clientOf("n0"), Serializable: true, QuorumLost: true, QuorumWhy: "no member named a leader in two reads 3s apart (n0 answered without one)",
		Status: map[uint64]etcdclient.MemberStatus{}, Unanswered: map[string]etcdclient.MemberStatus{}}
	for _, n := range names3 {
		e.Members = append(e.Members, etcdclient.Member{ID: idOf(t, n), Name: n, PeerURLs: []string{peerOf(n)}})
	}
	e.Status[idOf(t, "n0")] = etcdclient.MemberStatus{Name: "n0", Endpoint: clientOf("n0"), ID: etcdclient.FormatID(idOf(t, "n0")),
		MemberID: idOf(t, "n0"), Error: "etcdserver: no leader"}
	for _, n := range []string{"n1", "n2"} {
		e.Unanswered[clientOf(n)] = etcdclient.MemberStatus{Name: n, Endpoint: clientOf(n), Error: "connection refused"}
	}
	p := mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: e, Now: fixedNow})
	if len(p.Stages) == 0 {
		t.Fatalf("no stage:\n%s", planText(p))
	}
	for _, st := range p.Stages {
		if st.Rollout != AllAtOnce {
			t.Errorf("stage %q is %s, want %s", st.Name, st.Rollout, AllAtOnce)
		}
	}
	if d := anyDisruptive(p); len(d) > 0 {
		t.Errorf("disruptive operations: %v", d)
	}
	if steps := opsOf(p, "n0"); len(steps) > 0 {
		t.Errorf("n0 has operations: %v", kinds(steps))
	}
	for _, n := range []string{"n1", "n2"} {
		hp, _ := p.FindHost(n)
		if hp.Member.InitialCluster != ic || hp.Member.State != manifests.StateNew {
			t.Errorf("%s starts as %+v, want %s, new", n, hp.Member, ic)
		}
		found := false
		for _, st := range p.Stages {
			op, i := findOp(stageOps(st, n), isWriteOf(w.manifestPath()))
			if i < 0 {
				continue
			}
			found = true
			m := facts.ParseManifest(as[ops.Write](t, op).Change.File.Data)
			if m.InitialClusterState != manifests.StateNew || m.InitialCluster != ic {
				t.Errorf("%s: manifest state %q, initial cluster %q; want new, %s", n, m.InitialClusterState, m.InitialCluster, ic)
			}
			for _, want := range names3 {
				if !slices.Contains(st.Wait, want) {
					t.Errorf("stage %q starting %s does not wait for %s: %v", st.Name, n, want, st.Wait)
				}
			}
		}
		if !found {
			t.Errorf("%s: no stage writes its manifest:\n%s", n, planText(p))
		}
	}
}

// 10. Data of a member the cluster does not know.
func TestBuildRefusesForeignData(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	hosts["n2"].DataDir.MemberID = 0xdead
	stop(hosts["n2"])
	p, err := build(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n0", "n0", "n1"), Now: fixedNow})
	re := mustRefuse(t, p, err)
	if !slices.ContainsFunc(re.Refusals, func(r Refusal) bool {
		return r.Host == "n2" && strings.Contains(r.Reason, "`etcdadm reset n2`") && strings.Contains(r.Reason, "dead")
	}) {
		t.Errorf("no refusal for n2 naming member dead and `etcdadm reset n2`:\n%v", err)
	}
}

// 11. A started member whose data is gone.
func TestBuildRefusesLostData(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	dropData(hosts["n2"])
	stop(hosts["n2"])
	e := etcdView(t, "n0", names3...)
	down(t, e, "n2")
	p, err := build(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: e, Now: fixedNow})
	re := mustRefuse(t, p, err)
	if !slices.ContainsFunc(re.Refusals, func(r Refusal) bool {
		return r.Host == "n2" && strings.Contains(r.Reason, "`etcdadm member replace n2`")
	}) {
		t.Errorf("no refusal for n2 suggesting `etcdadm member replace n2`:\n%v", err)
	}
}

// 12. Work a previous run recorded is finished even though every file is
// as planned.
func TestBuildFinishesPendingWork(t *testing.T) {
	t.Run("kubelet restart", func(t *testing.T) {
		w := newWorld(t, 3)
		hosts := w.allBootstrapped(t)
		hosts["n0"].Pending = []string{facts.PendingKubeletRestart}
		p := mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow})
		if len(p.Stages) != 1 || !slices.Equal(stageHosts(p.Stages[0]), []string{"n0"}) {
			t.Fatalf("want one stage for n0:\n%s", planText(p))
		}
		steps := stageOps(p.Stages[0], "n0")
		want := []string{"run " + CmdDaemonReload, "run " + CmdRestartKube, "unmark " + facts.PendingKubeletRestart, string(ops.KindWaitMember), string(ops.KindWaitCluster)}
		if diff := cmp.Diff(want, kinds(steps)); diff != "" {
			t.Errorf("operations (-want +got):\n%s", diff)
		}
		if op, i := first[ops.WaitMember](steps); i < 0 || op.Member != "n0" {
			t.Errorf("wait-member %+v, want n0", op)
		}
	})
	t.Run("etcd restart", func(t *testing.T) {
		w := newWorld(t, 3)
		hosts := w.allBootstrapped(t)
		hosts["n0"].Pending = []string{facts.PendingEtcdRestart}
		p := mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow})
		if len(p.Stages) != 1 || !slices.Equal(stageHosts(p.Stages[0]), []string{"n0"}) {
			t.Fatalf("want one stage for n0:\n%s", planText(p))
		}
		steps := stageOps(p.Stages[0], "n0")
		want := []string{string(ops.KindRestartEtcd), string(ops.KindWaitMember), "unmark " + facts.PendingEtcdRestart, string(ops.KindWaitCluster)}
		if diff := cmp.Diff(want, kinds(steps)); diff != "" {
			t.Fatalf("operations (-want +got):\n%s", diff)
		}
		if !steps[0].Meta().Disruptive {
			t.Error("the restart of a running member is not disruptive")
		}
		if m := facts.ParseManifest(as[ops.RestartEtcd](t, steps[0]).Change.File.Data); m.Restart != fixedStamp {
			t.Errorf("restart annotation %q, want %q", m.Restart, fixedStamp)
		}
		if !as[ops.WaitMember](t, steps[1]).NewProcess {
			t.Error("wait-member does not wait for a new process")
		}
	})
}

// 13. A member the inventory does not name is left alone, with a warning.
func TestBuildWarnsAboutUnknownMembers(t *testing.T) {
	w := newWorld(t, 3)
	e := etcdView(t, "n1", "n0", "n1", "n2", "ghost")
	p := mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: w.allBootstrapped(t), Etcd: e, Now: fixedNow})
	if !slices.ContainsFunc(p.Warnings, func(s string) bool { return strings.Contains(s, "ghost") && strings.Contains(s, "left alone") }) {
		t.Errorf("no warning about ghost being left alone: %q", p.Warnings)
	}
	if steps := opsOf(p, "ghost"); len(steps) > 0 {
		t.Errorf("operations for ghost: %v", kinds(steps))
	}
	if !p.Empty() {
		t.Errorf("plan is not empty:\n%s", planText(p))
	}
}

// 17. The text and JSON forms name every stage and host, and print no key.
func TestBuildPlanOutput(t *testing.T) {
	w, hosts, e := sanChange(t)
	p := mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: e, Now: fixedNow})
	var text, js bytes.Buffer
	WriteText(&text, p)
	if err := WriteJSON(&js, p); err != nil {
		t.Fatal(err)
	}
	for _, st := range p.Stages {
		if !strings.Contains(text.String(), st.Name) {
			t.Errorf("text lacks stage %q", st.Name)
		}
		for _, ho := range st.Hosts {
			if !strings.Contains(text.String(), "  "+ho.Host+":") {
				t.Errorf("text lacks host %s of stage %q", ho.Host, st.Name)
			}
		}
	}
	for _, out := range []string{text.String(), js.String()} {
		if strings.Contains(out, "PRIVATE KEY") {
			t.Error("a private key is printed")
		}
	}
	var decoded map[string]any
	if err := json.Unmarshal(js.Bytes(), &decoded); err != nil {
		t.Fatal(err)
	}
	stages, ok := decoded["stages"].([]any)
	if !ok || len(stages) != len(p.Stages) {
		t.Fatalf("JSON stages %v, want %d", decoded["stages"], len(p.Stages))
	}
	for i, s := range stages {
		st, _ := s.(map[string]any)
		if st["name"] != p.Stages[i].Name {
			t.Errorf("JSON stage %d is %v, want %q", i, st["name"], p.Stages[i].Name)
		}
		var got []string
		hs, _ := st["hosts"].([]any)
		for _, h := range hs {
			hm, _ := h.(map[string]any)
			name, _ := hm["host"].(string)
			got = append(got, name)
		}
		if !slices.Equal(got, stageHosts(p.Stages[i])) {
			t.Errorf("JSON stage %d hosts %v, want %v", i, got, stageHosts(p.Stages[i]))
		}
	}
}

// Every member's certificates expired: no member answers and none can reach
// another, so there is no quorum to protect. Every member gets new
// certificates and restarts at once, in one stage: asked whether they still
// have no leader before any certificate is written (etcd reads new leaves
// at once, and members that have them could elect one).
func TestBuildRecoversExpiredCertificates(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	renewed, _, err := certs.Compute(w.c, certs.Options{Renew: []string{"all"}})
	if err != nil {
		t.Fatal(err)
	}
	gone := &facts.Cluster{ListError: "no member answered: certificate has expired",
		Status: map[uint64]etcdclient.MemberStatus{}, Unanswered: map[string]etcdclient.MemberStatus{}}
	// A year and a day later, the hosts' leaves (one year) have expired.
	later := time.Now().Add(366 * 24 * time.Hour)
	p := mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: renewed, Hosts: hosts, Etcd: gone, Now: later})
	if len(p.Stages) != 1 || p.Stages[0].Rollout != AllAtOnce || !strings.HasPrefix(p.Stages[0].Name, "recovery") {
		t.Fatalf("want one all-at-once recovery stage:\n%s", planText(p))
	}
	st := p.Stages[0]
	if !strings.Contains(st.Why, "expired") || !strings.Contains(st.QuorumLost, "expired") {
		t.Errorf("the recovery does not say why, or claims no lost quorum to check: %q, %q", st.Why, st.QuorumLost)
	}
	for _, n := range names3 {
		steps := stageOps(st, n)
		_, w := findOp(steps, isWriteOf("/etc/kubernetes/pki/etcd/peer.crt"))
		op, r := findOp(steps, isKind(ops.KindRestartEtcd))
		if w < 0 || r < w || !op.Meta().Disruptive {
			t.Errorf("%s: %v, want its new peer certificate, then its restart", n, kinds(steps))
		}
	}
	if !slices.Equal(sorted(st.Wait), names3) {
		t.Errorf("the recovery waits for %v", st.Wait)
	}
	// The same hosts before their certificates expired, not answering for
	// some other reason: nothing is restarted blind.
	_, err = build(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: renewed, Hosts: hosts, Etcd: gone, Now: time.Now()})
	mustRefuse(t, nil, err)
}

// One host's certificates expired: that member is down, the others keep
// quorum, so it is repaired first, like any unhealthy member.
func TestBuildRenewsOneHostsExpiredCertificates(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	renewed, _, err := certs.Compute(w.c, certs.Options{Renew: []string{"all"}, Hosts: []string{"n2"}})
	if err != nil {
		t.Fatal(err)
	}
	e := etcdView(t, "n0", names3...)
	unhealthy(t, e, "n2")
	p := mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: renewed, Hosts: hosts, Etcd: e, Now: time.Now()})
	if len(p.Stages) != 1 || p.Stages[0].Rollout != OneAtATime || !slices.Equal(stageHosts(p.Stages[0]), []string{"n2"}) {
		t.Fatalf("want n2 alone, one at a time:\n%s", planText(p))
	}
	if _, i := findOp(stageOps(p.Stages[0], "n2"), isKind(ops.KindRestartEtcd)); i < 0 {
		t.Errorf("n2 is not restarted: %v", kinds(stageOps(p.Stages[0], "n2")))
	}
}

// Only the client certificates renewed: written on every host, one at a
// time, and no member restarts (etcd does not present them).
func TestBuildRenewsClientCertificatesWithoutRestarts(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	renewed, _, err := certs.Compute(w.c, certs.Options{Renew: []string{certs.EtcdHealthcheckClient, certs.APIServerEtcdClient}})
	if err != nil {
		t.Fatal(err)
	}
	p := mustBuild(t, Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: renewed, Hosts: hosts, Etcd: etcdView(t, "n0", names3...), Now: time.Now()})
	if len(p.Stages) != 1 {
		t.Fatalf("want one stage:\n%s", planText(p))
	}
	for _, n := range names3 {
		steps := stageOps(p.Stages[0], n)
		if len(writtenPaths(steps)) != 4 {
			t.Errorf("%s: writes %v, want the two client certificates and keys", n, writtenPaths(steps))
		}
		for _, op := range steps {
			if op.Meta().Disruptive || op.Kind() == ops.KindRestartEtcd || op.Kind() == ops.KindMark {
				t.Errorf("%s: %s for client certificates", n, op)
			}
		}
	}
}
