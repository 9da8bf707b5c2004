package plan

import (
	"errors"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/snapshot"
)

// testSHA is the sha256 of the snapshot the restores of these tests use.
var testSHA = strings.Repeat("ab", 32)

// staged is a restore's source: the snapshot made into the members' data
// directories under /tmp/restore.
var staged = RestoreSource{File: "/tmp/snap.db", Dir: "/tmp/restore", Token: "test-20300101T000000Z", SHA256: testSHA, Size: 10 << 20, LocalFree: -1}

// marker is the record of staged's restore on the hosts.
var marker = RestoreMarker(testSHA, staged.Token)

// restoredData makes the host's data directory hold its member of the
// cluster the token restores, as a swap leaves it.
func (w *world) restoredData(t *testing.T, hf *facts.Host, token string) {
	t.Helper()
	cluster, ids, err := snapshot.Identity(restoreMembers(w.c), token)
	if err != nil {
		t.Fatal(err)
	}
	hf.DataDir = facts.DataDir{Exists: true, Entries: 1, HasWAL: true, MemberID: ids[hf.Name], ClusterID: cluster}
}

func stageList(p *Plan) string { return strings.Join(stageNames(p), " | ") }

func TestRestore(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	in := Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n1", "n0", "n1", "n2"), Now: fixedNow}
	p, err := Restore(in, staged)
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range p.Stages {
		if st.Rollout != AllAtOnce || (len(st.Hosts) != 3 && i != 1 && i != 5) {
			t.Errorf("stage %q: %s on %d hosts, want all three at once", st.Name, st.Rollout, len(st.Hosts))
		}
	}
	if got := stageList(p); got != "record the restore | make the data directories here | push the restored data | stop every member | swap the data directories | start the restored members | remove the staged data and the records" {
		t.Fatalf("stages: %s", got)
	}
	// Every host records the restore before anything else.
	for _, ho := range p.Stages[0].Hosts {
		if m := as[ops.Mark](t, ho.Ops[0]); m.Marker != facts.PendingRestore+testSHA+"-"+staged.Token {
			t.Errorf("%s records %s", ho.Host, m.Marker)
		}
	}
	// The data directories are made here, one per member.
	if len(p.Stages[1].Hosts) != 1 || p.Stages[1].Hosts[0].Host != LocalHost || len(p.Stages[1].Hosts[0].Ops) != 1 {
		t.Fatalf("the make stage %+v: want one operation on this machine", p.Stages[1].Hosts)
	}
	rd := as[ops.RestoreData](t, p.Stages[1].Hosts[0].Ops[0])
	if rd.Snapshot != staged.File || rd.Dir != staged.Dir || rd.Token != staged.Token || len(rd.Members) != 3 || rd.Make != nil || rd.Members[2].Name != "n2" || rd.Members[2].PeerURL != peerOf("n2") {
		t.Errorf("restore-data %+v", rd)
	}
	staging := RestoreStaging(w.c.Spec.Etcd.DataDir)
	if staging != "/var/lib/.etcd.etcdadm-restore" {
		t.Errorf("staging %s: want it next to the data directory", staging)
	}
	for i, want := range []ops.Kind{ops.KindPushData, ops.KindStopEtcd, ops.KindSwapData, ops.KindRestartEtcd, ops.KindUnmark} {
		for _, ho := range p.Stages[i+2].Hosts {
			op := ho.Ops[len(ho.Ops)-1]
			if (len(ho.Ops) != 1 && i < 3) || op.Kind() != want {
				t.Fatalf("%s in stage %d: %v, want %s", ho.Host, i+2, kinds(ho.Ops), want)
			}
			switch op := op.(type) {
			case ops.PushData:
				if op.Source != "/tmp/restore/"+ho.Host || op.Path != staging {
					t.Errorf("%s: push %s to %s", ho.Host, op.Source, op.Path)
				}
			case ops.SwapData:
				if op.Path != w.c.Spec.Etcd.DataDir || op.Source != staging || op.Keep != facts.KeptPreRestore || op.Ref != marker {
					t.Errorf("%s: swap %+v; want the old data kept for good", ho.Host, op)
				}
			case ops.RestartEtcd:
				m := facts.ParseManifest(op.Change.File.Data)
				if m.InitialClusterState != "new" || strings.Count(m.InitialCluster, "=") != 3 || !strings.Contains(m.Restart, "restored") || op.Retry == nil {
					t.Errorf("%s: the restored member's manifest: state %s, initial cluster %s, restart %q", ho.Host, m.InitialClusterState, m.InitialCluster, m.Restart)
				}
			case ops.Unmark:
				rm := as[ops.Run](t, ho.Ops[0])
				if op.Marker != marker || rm.Command != "rm -rf -- '"+staging+"'" {
					t.Errorf("%s: cleans with %v", ho.Host, kinds(ho.Ops))
				}
			}
		}
	}
	if len(p.Stages[5].Wait) != 3 {
		t.Errorf("the start must wait for every member: %v", p.Stages[5].Wait)
	}
}

// A restore cut short goes on from what the hosts hold, with the token
// their records name: a host restored already is neither made, pushed,
// stopped nor swapped again; one that runs its restored member is not
// started again; at the end the staged data and the records go.
func TestRestoreResumes(t *testing.T) {
	w := newWorld(t, 3)
	cut := func(t *testing.T) Input {
		hosts := w.allBootstrapped(t)
		for _, hf := range hosts {
			hf.Pending = []string{marker}
			stop(hf)
			w.dropManifest(hf)
		}
		w.restoredData(t, hosts["n0"], staged.Token)
		return Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: &facts.Cluster{ListError: "no member runs"}, Now: fixedNow}
	}
	t.Run("cut after the first swap", func(t *testing.T) {
		in := cut(t)
		src := staged
		src.Token = "a-new-token"
		if tok, err := RestoreToken(in, src); err != nil || tok != staged.Token {
			t.Fatalf("token %q %v, want the records' %s", tok, err, staged.Token)
		}
		src.Token = staged.Token
		p, err := Restore(in, src)
		if err != nil {
			t.Fatal(err)
		}
		if got := stageList(p); got != "make the data directories here | push the restored data | stop every member | swap the data directories | start the restored members | remove the staged data and the records" {
			t.Fatalf("stages: %s", got)
		}
		rd := as[ops.RestoreData](t, p.Stages[0].Hosts[0].Ops[0])
		if strings.Join(rd.Make, ",") != "n1,n2" || len(rd.Members) != 3 || rd.Token != staged.Token {
			t.Errorf("made again: %+v, want n1 and n2's only, for the whole cluster", rd)
		}
		for i := 1; i <= 3; i++ {
			if got := stageHosts(p.Stages[i]); strings.Join(got, ",") != "n1,n2" {
				t.Errorf("%q on %v, want n1 and n2", p.Stages[i].Name, got)
			}
		}
		if got := stageHosts(p.Stages[4]); strings.Join(got, ",") != "n0,n1,n2" {
			t.Errorf("started: %v", got)
		}
		if len(p.Warnings) == 0 || !strings.Contains(p.Warnings[len(p.Warnings)-1], "1 of 3 hosts hold their restored data already") {
			t.Errorf("warnings %v", p.Warnings)
		}
	})
	t.Run("cut once the members started", func(t *testing.T) {
		in := cut(t)
		for i, n := range names3 {
			w.restoredData(t, in.Hosts[n], staged.Token)
			run(in.Hosts[n], 5000+i)
		}
		p, err := Restore(in, staged)
		if err != nil {
			t.Fatal(err)
		}
		if got := stageList(p); got != "start the restored members | remove the staged data and the records" || len(p.Stages[0].Wait) != 3 {
			t.Fatalf("stages: %s, waiting for %v", got, p.Stages[0].Wait)
		}
		for _, ho := range p.Stages[0].Hosts {
			if _, i := first[ops.RestartEtcd](ho.Ops); i >= 0 {
				t.Errorf("%s runs its restored member, and is started again", ho.Host)
			}
		}
	})
	t.Run("another snapshot's restore is not finished", func(t *testing.T) {
		in := cut(t)
		src := staged
		src.SHA256, src.File = strings.Repeat("cd", 32), "/tmp/other.db"
		_, err := Restore(in, src)
		var re *RefusedError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), testSHA) || !strings.Contains(err.Error(), "--abort") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("two restores' records", func(t *testing.T) {
		in := cut(t)
		in.Hosts["n2"].Pending = []string{RestoreMarker(testSHA, "other-token")}
		if _, err := Unfinished(in); err == nil || !strings.Contains(err.Error(), "two restores") {
			t.Fatalf("err %v", err)
		}
	})
}

// A restore needs room for the data it makes: next to each host's data
// directory, and here for every member it makes.
func TestRestoreRoom(t *testing.T) {
	w := newWorld(t, 3)
	in := Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: w.allBootstrapped(t), Etcd: etcdView(t, "n1", names3...), Now: fixedNow}
	src := staged
	one := snapshot.DataDirSize(src.Size)
	src.Free = map[string]int64{"n0": one, "n1": one - 1}
	src.LocalFree = 3*one - 1
	p, err := Restore(in, src)
	re := mustRefuse(t, p, err)
	text := re.Error()
	for _, want := range []string{"n1: has", "/var/lib", "TMPDIR", "3 of them"} {
		if !strings.Contains(text, want) {
			t.Errorf("refusal lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "n0: has") {
		t.Errorf("n0 has room:\n%s", text)
	}
	src.Free["n1"], src.LocalFree = one, 3*one
	if _, err := Restore(in, src); err != nil {
		t.Errorf("with room: %v", err)
	}
}

func TestRestoreRefusals(t *testing.T) {
	t.Run("an unreachable host", func(t *testing.T) {
		w := newWorld(t, 3)
		hosts := w.allBootstrapped(t)
		delete(hosts, "n2")
		_, err := Restore(Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: &facts.Cluster{}, Now: fixedNow}, staged)
		if err == nil || !strings.Contains(err.Error(), "n2") || !strings.Contains(err.Error(), "every host must be reachable") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("a host whose certificates differ", func(t *testing.T) {
		w := newWorld(t, 3)
		hosts := w.allBootstrapped(t)
		delete(hosts["n1"].Files, "/etc/kubernetes/pki/etcd/peer.crt")
		p, err := Restore(Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: &facts.Cluster{}, Now: fixedNow}, staged)
		if err == nil || !strings.Contains(err.Error(), "peer.crt") || !strings.Contains(err.Error(), "etcdadm apply") || !p.Refused || len(p.Stages) != 0 {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("a stopped kubelet", func(t *testing.T) {
		w := newWorld(t, 3)
		hosts := w.allBootstrapped(t)
		hosts["n0"].KubeletActive = "inactive"
		_, err := Restore(Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: &facts.Cluster{}, Now: fixedNow}, staged)
		if err == nil || !strings.Contains(err.Error(), "kubelet is inactive") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("a member not in the inventory is warned about", func(t *testing.T) {
		w := newWorld(t, 3)
		e := etcdView(t, "n1", "n0", "n1", "n2")
		e.Members = append(e.Members, etcdclient.Member{ID: 0xabc, Name: "old", PeerURLs: []string{"https://192.0.2.9:2380"}})
		p, err := Restore(Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: w.allBootstrapped(t), Etcd: e, Now: fixedNow}, staged)
		if err != nil || len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], "old") {
			t.Fatalf("err %v, warnings %v", err, p.Warnings)
		}
	})
}

// A member that joined the running cluster has a kubeadmcfg.yaml of a
// joining member: the restore rewrites it with the manifest, as for a new
// cluster, instead of refusing.
func TestRestoreRewritesHowMembersStart(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	ic := etcdclient.InitialCluster([]etcdclient.Member{member(t, "n0"), member(t, "n1")}, "n2", peerOf("n2"))
	hosts["n2"] = w.asPlanned(t, "n2", Member{InitialCluster: ic, State: "existing"})
	p, err := Restore(Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n1", "n0", "n1", "n2"), Now: fixedNow}, staged)
	if err != nil {
		t.Fatal(err)
	}
	start := p.Stages[5]
	steps := stageOps(start, "n2")
	if got := kinds(steps); len(steps) != 2 || steps[0].Kind() != ops.KindWrite || as[ops.Write](t, steps[0]).Path != "/etc/kubernetes/kubeadmcfg.yaml" {
		t.Fatalf("n2 starts with %v, want kubeadmcfg.yaml written, then the restart", got)
	}
	if steps := stageOps(start, "n0"); len(steps) != 1 {
		t.Errorf("n0's files are a new cluster's already: %v", kinds(steps))
	}
}

// An abort puts back the old data of each host that has the restored data
// (or none) from the run directory that keeps it, stops the restored
// members first, starts every member that does not run, then clears the
// staged data and the records.
func TestAbortRestore(t *testing.T) {
	w := newWorld(t, 3)
	dataDir := w.c.Spec.Etcd.DataDir
	kept := facts.Kept{Dir: "/var/lib/etcdadm/backup/20300101T000000Z", What: facts.KeptPreRestore, Path: dataDir, Ref: marker}
	cut := func(t *testing.T) Input {
		hosts := w.allBootstrapped(t)
		for _, hf := range hosts {
			hf.Pending = []string{marker}
		}
		// n0 runs its restored member; n1's swap was cut with its data
		// directory empty; n2 still has its old data, stopped.
		w.restoredData(t, hosts["n0"], staged.Token)
		hosts["n0"].Kept = []facts.Kept{{Dir: "/var/lib/etcdadm/backup/20291231T000000Z", What: facts.KeptPreRestore, Path: dataDir, Ref: "restore-older"}, kept}
		dropData(hosts["n1"])
		stop(hosts["n1"])
		w.dropManifest(hosts["n1"])
		hosts["n1"].Kept = []facts.Kept{kept}
		stop(hosts["n2"])
		w.dropManifest(hosts["n2"])
		return Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: &facts.Cluster{ListError: "no quorum"}, Now: fixedNow}
	}
	p, err := AbortRestore(cut(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := stageList(p); got != "stop the restored members | put the old data back | start the members on their old data | remove the staged data and the records" {
		t.Fatalf("stages: %s", got)
	}
	if got := stageHosts(p.Stages[0]); strings.Join(got, ",") != "n0" {
		t.Errorf("stopped %v, want n0", got)
	}
	for _, ho := range p.Stages[1].Hosts {
		sw := as[ops.SwapData](t, ho.Ops[0])
		if sw.Path != dataDir || sw.Source != path.Join(kept.Dir, dataDir) || sw.Release != kept.Dir || sw.Keep != "" {
			t.Errorf("%s: %+v, want the old data back from %s", ho.Host, sw, kept.Dir)
		}
	}
	if got := stageHosts(p.Stages[1]); strings.Join(got, ",") != "n0,n1" {
		t.Errorf("put back on %v, want n0 and n1", got)
	}
	if got := stageHosts(p.Stages[2]); strings.Join(got, ",") != "n0,n1,n2" || len(p.Stages[2].Wait) != 3 {
		t.Errorf("started %v", got)
	}
	for _, ho := range p.Stages[3].Hosts {
		if got := kinds(ho.Ops); len(got) != 2 || as[ops.Unmark](t, ho.Ops[1]).Marker != marker {
			t.Errorf("%s cleans with %v", ho.Host, got)
		}
	}

	t.Run("restored data whose old data is gone", func(t *testing.T) {
		in := cut(t)
		in.Hosts["n0"].Kept = nil
		p, err := AbortRestore(in)
		re := mustRefuse(t, p, err)
		if len(re.Refusals) != 1 || re.Refusals[0].Host != "n0" || !strings.Contains(re.Error(), "cannot go back") {
			t.Errorf("%v", err)
		}
	})
	t.Run("the restored cluster runs with quorum", func(t *testing.T) {
		in := cut(t)
		_, ids, _ := snapshot.Identity(restoreMembers(w.c), staged.Token)
		in.Etcd = etcdView(t, "n0", names3...)
		for i, m := range in.Etcd.Members {
			st := in.Etcd.Status[m.ID]
			delete(in.Etcd.Status, m.ID)
			in.Etcd.Members[i].ID, st.MemberID = ids[m.Name], ids[m.Name]
			in.Etcd.Status[ids[m.Name]] = st
		}
		_, err := AbortRestore(in)
		if err == nil || !strings.Contains(err.Error(), "runs with quorum") {
			t.Errorf("%v", err)
		}
	})
	t.Run("a control plane the restore stopped is started last", func(t *testing.T) {
		in := cut(t)
		wc, hosts := withCPs(t, w, in.Hosts, clientsOf(names3...), "cp0")
		a := hosts["cp0"].APIServer
		a.HeldManifest, a.Manifest = a.Manifest, nil
		a.Held, a.Running = a.Running, nil
		hosts["cp0"].Pending = []string{facts.PendingControlPlane}
		in.Cluster, in.PKI, in.Hosts = wc.c, wc.pki, hosts
		p, err := AbortRestore(in)
		if err != nil {
			t.Fatal(err)
		}
		last := p.Stages[len(p.Stages)-1]
		if got := kinds(stageOps(last, "cp0")); len(p.Stages) != 5 || strings.Join(got, ",") != "start-control-plane,unmark control-plane-stopped" {
			t.Fatalf("stages %s; cp0's last: %v", stageList(p), got)
		}
		if up := as[ops.StartControlPlane](t, stageOps(last, "cp0")[0]); !slices.Equal(up.Names, a.Held) {
			t.Errorf("put back %v, want the held %v", up.Names, a.Held)
		}
	})
	t.Run("nothing to abort", func(t *testing.T) {
		in := Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: w.allBootstrapped(t), Now: fixedNow}
		if _, err := AbortRestore(in); err == nil || !strings.Contains(err.Error(), "no restore to abort") {
			t.Errorf("%v", err)
		}
		in.Restore = &snapshot.Record{File: "/tmp/snap.db", SHA256: testSHA, Token: staged.Token}
		p, err := AbortRestore(in)
		if err != nil || len(p.Stages) != 0 || len(p.Warnings) != 1 {
			t.Errorf("only this machine's record: %v, %+v", err, p)
		}
	})
}

// Every command that would start etcd refuses while a restore has not
// finished, naming the command that finishes it; a mix of clusters in the
// data directories is refused too, but for the host a command is about.
func TestUnfinishedRestoreRefusesOtherCommands(t *testing.T) {
	w := newWorld(t, 3)
	record := &snapshot.Record{File: "/srv/snaps/prod.db", SHA256: testSHA, Token: staged.Token}
	marked := func(t *testing.T) Input {
		hosts := w.allBootstrapped(t)
		hosts["n1"].Pending = []string{marker}
		return Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n1", names3...), Now: fixedNow, Restore: record}
	}
	commands := map[string]func(Input) (*Plan, error){
		"apply":         Build,
		"member remove": func(in Input) (*Plan, error) { return Remove(in, "n2") },
		"member replace": func(in Input) (*Plan, error) {
			return Replace(in, "n2", false)
		},
		"reset":   func(in Input) (*Plan, error) { return Reset(in, "n2") },
		"recover": func(in Input) (*Plan, error) { return Recover(in, "") },
		"defrag":  func(in Input) (*Plan, error) { return Defrag(in, DefragOptions{Compact: true}) },
		"move": func(in Input) (*Plan, error) {
			return Move(in, "n2", MoveFrom{Host: "n2 (old 192.0.2.50)", Address: "192.0.2.50"})
		},
	}
	for name, command := range commands {
		_, err := command(marked(t))
		if err == nil || !strings.Contains(err.Error(), "etcdadm snapshot restore '/srv/snaps/prod.db' --yes") || !strings.Contains(err.Error(), "--abort") || !strings.Contains(err.Error(), "n1") {
			t.Errorf("%s: %v", name, err)
		}
	}
	in := marked(t)
	in.Hosts["n1"].Pending = nil
	if _, err := Build(in); err == nil || !strings.Contains(err.Error(), "this machine's record") {
		t.Errorf("apply with this machine's record only: %v", err)
	}

	// No record, but n2 holds the restored cluster (a cut restore whose
	// records are gone, every etcd stopped): refused, naming n2, but for a
	// command about n2.
	mixed := marked(t)
	mixed.Restore = nil
	mixed.Hosts["n1"].Pending = nil
	w.restoredData(t, mixed.Hosts["n2"], staged.Token)
	for _, hf := range mixed.Hosts {
		stop(hf)
	}
	_, err := Build(mixed)
	if err == nil || !strings.Contains(err.Error(), "n2: its data directory holds another cluster") || !strings.Contains(err.Error(), "etcdadm reset n2") {
		t.Errorf("apply with a mix of clusters: %v", err)
	}
	if err := unfinishedRestore(mixed, "reset", "n2"); err != nil {
		t.Errorf("a command about n2 refused for n2's data: %v", err)
	}
}
