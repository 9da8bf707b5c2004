package plan

import (
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

// staged is a restore's source: the snapshot made into the members' data
// directories under /tmp/restore.
var staged = RestoreSource{File: "/tmp/snap.db", Dir: "/tmp/restore", Token: "test-20300101T000000Z"}

func TestRestore(t *testing.T) {
	w := newWorld(t, 3)
	hosts := w.allBootstrapped(t)
	in := Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: hosts, Etcd: etcdView(t, "n1", "n0", "n1", "n2"), Now: fixedNow}
	p, err := Restore(in, staged)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, st := range p.Stages {
		names = append(names, st.Name)
		if st.Rollout != AllAtOnce || (len(st.Hosts) != 3 && len(names) > 1) {
			t.Errorf("stage %q: %s on %d hosts, want all three at once", st.Name, st.Rollout, len(st.Hosts))
		}
	}
	if got := strings.Join(names, " | "); got != "make the data directories here | push the restored data | stop every member | swap the data directories | start the restored members" {
		t.Fatalf("stages: %s", got)
	}
	// The data directories are made here first, one per member.
	if len(p.Stages[0].Hosts) != 1 || p.Stages[0].Hosts[0].Host != LocalHost || len(p.Stages[0].Hosts[0].Ops) != 1 {
		t.Fatalf("first stage %+v: want one operation on this machine", p.Stages[0].Hosts)
	}
	rd := as[ops.RestoreData](t, p.Stages[0].Hosts[0].Ops[0])
	if rd.Snapshot != staged.File || rd.Dir != staged.Dir || rd.Token != staged.Token || len(rd.Members) != 3 || rd.Members[2].Name != "n2" || rd.Members[2].PeerURL != peerOf("n2") {
		t.Errorf("restore-data %+v", rd)
	}
	staging := RestoreStaging(w.c.Spec.Etcd.DataDir)
	if staging != "/var/lib/.etcd.etcdadm-restore" {
		t.Errorf("staging %s: want it next to the data directory", staging)
	}
	for i, want := range []ops.Kind{ops.KindPushData, ops.KindStopEtcd, ops.KindSwapData, ops.KindRestartEtcd} {
		for _, ho := range p.Stages[i+1].Hosts {
			op := ho.Ops[len(ho.Ops)-1]
			if (len(ho.Ops) != 1 && i < 3) || op.Kind() != want {
				t.Fatalf("%s in stage %d: %v, want %s", ho.Host, i, kinds(ho.Ops), want)
			}
			switch op := op.(type) {
			case ops.PushData:
				if op.Source != "/tmp/restore/"+ho.Host || op.Path != staging {
					t.Errorf("%s: push %s to %s", ho.Host, op.Source, op.Path)
				}
			case ops.SwapData:
				if op.Path != w.c.Spec.Etcd.DataDir || op.Source != staging {
					t.Errorf("%s: swap %s for %s", ho.Host, op.Path, op.Source)
				}
			case ops.RestartEtcd:
				m := facts.ParseManifest(op.Change.File.Data)
				if m.InitialClusterState != "new" || strings.Count(m.InitialCluster, "=") != 3 || !strings.Contains(m.Restart, "restored") || op.Retry == nil {
					t.Errorf("%s: the restored member's manifest: state %s, initial cluster %s, restart %q", ho.Host, m.InitialClusterState, m.InitialCluster, m.Restart)
				}
			}
		}
	}
	if p.Stages[4].Wait == nil || len(p.Stages[4].Wait) != 3 {
		t.Errorf("the start must wait for every member: %v", p.Stages[4].Wait)
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
	steps := stageOps(p.Stages[4], "n2")
	if got := kinds(steps); len(steps) != 2 || steps[0].Kind() != ops.KindWrite || as[ops.Write](t, steps[0]).Path != "/etc/kubernetes/kubeadmcfg.yaml" {
		t.Fatalf("n2 starts with %v, want kubeadmcfg.yaml written, then the restart", got)
	}
	if steps := stageOps(p.Stages[4], "n0"); len(steps) != 1 {
		t.Errorf("n0's files are a new cluster's already: %v", kinds(steps))
	}
}
