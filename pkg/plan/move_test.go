package plan

// Scenarios of `etcdadm member move`, and of apply on an inventory whose
// member moved.

import (
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

// newAddress is where n2 moves.
const newAddress = "192.0.2.42"

// moved is three running members brought up from w, and the same
// operator's inventory with n2 at newAddress (its PKI worked out again in
// memory): n2's new host is an empty machine, its old host is as it was.
func moved(t *testing.T) (*world, Input, MoveFrom) {
	t.Helper()
	w := newWorld(t, 3)
	old := w.bootstrapped(t, "n2")
	hosts := w.allBootstrapped(t)
	c := parseInventory(t, strings.Replace(inventoryYAML(3, ""), "address: "+addrOf("n2"), "address: "+newAddress, 1), w.dir)
	nw := &world{dir: w.dir, c: c, pki: computePKI(t, c)}
	hosts["n2"] = emptyHost("n2")
	in := Input{Cluster: nw.c, Runtime: rtOf(nw.c), PKI: nw.pki, Hosts: hosts, Etcd: etcdView(t, "n0", names3...), Now: fixedNow}
	from, err := MoveSource(in, "n2")
	if err != nil {
		t.Fatal(err)
	}
	from.Facts = old
	return nw, in, from
}

// The source of a move is the member's peer URL in the member list.
func TestMoveSource(t *testing.T) {
	_, in, from := moved(t)
	if from.Address != addrOf("n2") || from.Host != "n2 (old "+addrOf("n2")+")" {
		t.Errorf("from %s at %s, want n2's old address %s", from.Host, from.Address, addrOf("n2"))
	}
	// A move cut after the peer URL changed: the new host's record.
	viewMember(t, in.Etcd, "n2").PeerURLs = []string{manifests.PeerURL(in.Cluster.Spec.Hosts[2])}
	if got, err := MoveSource(in, "n2"); err != nil || got.Address != "" {
		t.Errorf("without a record: %+v %v; want nothing to move", got, err)
	}
	in.Hosts["n2"].Pending = []string{facts.PendingMoveFrom + addrOf("n2")}
	if got, err := MoveSource(in, "n2"); err != nil || got.Address != addrOf("n2") {
		t.Errorf("with the record: %+v %v; want %s", got, err, addrOf("n2"))
	}
	for name, want := range map[string]string{"n9": "not a host of the inventory"} {
		_, err := MoveSource(in, name)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("MoveSource(%s): %v, want %q", name, err, want)
		}
	}
	in.Etcd.Serializable = true
	if _, err := MoveSource(in, "n2"); err == nil || !strings.Contains(err.Error(), "no quorum") {
		t.Errorf("without quorum: %v", err)
	}
}

// The stages, in order: the record on the new host, the member stopped on
// its old host (leadership handed over first), its data streamed to the
// new host, its peer URL updated, its start on the new host with
// certificates for the new address, the old host cleaned, the record
// cleared.
func TestMoveStages(t *testing.T) {
	w, in, from := moved(t)
	in.Etcd.LeaderID = idOf(t, "n2")
	p := mustPlan(t)(Move(in, "n2", from))
	wantStages(t, p,
		"record the move on n2",
		"stop n2 on its old host",
		"copy n2's data to its new host",
		"update n2's peer URL",
		"start n2 on its new host",
		"clean n2's old host",
		"finish the move",
	)
	if diff := cmp.Diff([]string{"mark move-from-" + addrOf("n2")}, kinds(stageOps(p.Stages[0], "n2"))); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
	stop := p.Stages[1]
	if stop.Rollout != OneAtATime || stop.Quorum != 2 || !slices.Equal(stageHosts(stop), []string{from.Host}) {
		t.Errorf("stop stage on %v, %s, quorum %d; want the old host, one at a time, quorum 2", stageHosts(stop), stop.Rollout, stop.Quorum)
	}
	if diff := cmp.Diff([]ops.Kind{ops.KindMoveLeader, ops.KindStopEtcd}, kindsOnly(stageOps(stop, from.Host))); diff != "" {
		t.Fatalf("stop (-want +got):\n%s", diff)
	}
	// The leader is asked at its old address, which the inventory no longer has.
	if ml := as[ops.MoveLeader](t, stageOps(stop, from.Host)[0]); ml.ClientURL != clientOf("n2") {
		t.Errorf("move-leader asks %q, want %s", ml.ClientURL, clientOf("n2"))
	}
	copyOps := stageOps(p.Stages[2], "n2")
	if diff := cmp.Diff([]ops.Kind{ops.KindCopyData, ops.KindSwapData}, kindsOnly(copyOps)); diff != "" {
		t.Fatalf("copy (-want +got):\n%s", diff)
	}
	cp := as[ops.CopyData](t, copyOps[0])
	if cp.From != from.Host || cp.Path != "/var/lib/etcd" || cp.Staging != "/var/lib/.etcd.etcdadm-move" || as[ops.SwapData](t, copyOps[1]).Source != cp.Staging {
		t.Errorf("copy %+v, swap %+v", cp, copyOps[1])
	}
	up := as[ops.UpdatePeer](t, stageOps(p.Stages[3], "n2")[0])
	if up.MemberID != etcdclient.FormatID(idOf(t, "n2")) || up.PeerURL != "https://"+newAddress+":2380" {
		t.Errorf("update-peer %+v", up)
	}
	start := stageOps(p.Stages[4], "n2")
	mw, i := findWrite(start, w.manifestPath())
	if i < 0 {
		t.Fatalf("no manifest written in %v", kinds(start))
	}
	m := facts.ParseManifest(mw.Change.File.Data)
	if m.Name != "n2" || m.InitialClusterState != manifests.StateExisting || m.Flags["advertise-client-urls"] != "https://"+newAddress+":2379" || !strings.Contains(m.InitialCluster, "n2=https://"+newAddress+":2380") {
		t.Errorf("n2's new manifest: name %s, state %s, client URLs %s, initial cluster %s", m.Name, m.InitialClusterState, m.Flags["advertise-client-urls"], m.InitialCluster)
	}
	if diff := cmp.Diff([]ops.Kind{ops.KindWaitMember, ops.KindWaitCluster}, kindsOnly(start[len(start)-2:])); diff != "" {
		t.Errorf("the start ends (-want +got):\n%s", diff)
	}
	if wc := as[ops.WaitCluster](t, start[len(start)-1]); !slices.Equal(wc.Members, names3) {
		t.Errorf("wait for %v, want every member", wc.Members)
	}
	// The PKI reissued n2's server and peer certificates for the new address.
	for _, leaf := range []string{"server", "peer"} {
		cw, _ := findWrite(start, "/etc/kubernetes/pki/etcd/"+leaf+".crt")
		cert, err := certs.ParseCert(cw.Change.File.Data)
		if err != nil {
			t.Fatalf("%s.crt: %v", leaf, err)
		}
		if !slices.ContainsFunc(cert.IPAddresses, func(ip net.IP) bool { return ip.String() == newAddress }) || slices.ContainsFunc(cert.IPAddresses, func(ip net.IP) bool { return ip.String() == addrOf("n2") }) {
			t.Errorf("%s.crt names %v, want %s and not %s", leaf, cert.IPAddresses, newAddress, addrOf("n2"))
		}
	}
	clean := kinds(stageOps(p.Stages[5], from.Host))
	if len(clean) < 2 || clean[0] != "backup /var/lib/etcd" || slices.Contains(clean, string(ops.KindStopEtcd)) {
		t.Errorf("old host clean-up %v: want its data first, no second stop", clean)
	}
	if !slices.Contains(clean, "backup /etc/kubernetes/pki/etcd/peer.key") || !slices.Contains(clean, "run "+CmdStopKube) {
		t.Errorf("old host clean-up %v: want its certificates moved aside and its kubelet stopped", clean)
	}
	if diff := cmp.Diff([]string{"unmark move-from-" + addrOf("n2")}, kinds(stageOps(p.Stages[6], "n2"))); diff != "" {
		t.Errorf("finish (-want +got):\n%s", diff)
	}
	if steps := opsOf(p, "n0"); len(steps) > 0 {
		t.Errorf("n0 is touched: %v", kinds(steps))
	}
}

func findWrite(steps []Op, path string) (ops.Write, int) {
	op, i := findOp(steps, isWriteOf(path))
	if i < 0 {
		return ops.Write{}, -1
	}
	return op.(ops.Write), i
}

// A move is refused when the old host cannot be reached (replace instead),
// when the others could not keep quorum, and when there is nothing to
// move or the new host holds another member.
func TestMoveRefusals(t *testing.T) {
	t.Run("old host unreachable", func(t *testing.T) {
		_, in, from := moved(t)
		from.Facts, from.Err = nil, "connection refused"
		p, err := checked(t)(Move(in, "n2", from))
		refusedWith(t, p, err, "n2", "old host at "+addrOf("n2")+" cannot be reached", "connection refused", "`etcdadm member replace n2`")
	})
	t.Run("another member down", func(t *testing.T) {
		_, in, from := moved(t)
		down(t, in.Etcd, "n1")
		p, err := checked(t)(Move(in, "n2", from))
		refusedWith(t, p, err, "n2", "1 of 3 voting members healthy", "quorum of 2", "n1")
	})
	t.Run("address unchanged", func(t *testing.T) {
		w := newWorld(t, 3)
		in := Input{Cluster: w.c, Runtime: rtOf(w.c), PKI: w.pki, Hosts: w.allBootstrapped(t), Etcd: etcdView(t, "n0", names3...), Now: fixedNow}
		from, err := MoveSource(in, "n2")
		if err != nil {
			t.Fatal(err)
		}
		p := mustPlan(t)(Move(in, "n2", from))
		if !p.Empty() || !hasWarning(p, "nothing to move") {
			t.Errorf("a member at its inventory address:\n%s", planText(p))
		}
	})
	t.Run("new host holds another member", func(t *testing.T) {
		_, in, from := moved(t)
		in.Hosts["n2"].DataDir = facts.DataDir{Exists: true, Entries: 1, HasWAL: true, MemberID: 0xdead}
		p, err := checked(t)(Move(in, "n2", from))
		refusedWith(t, p, err, "n2", "holds another member", "move it away")
	})
	t.Run("old host without the member's data", func(t *testing.T) {
		_, in, from := moved(t)
		dropData(from.Facts)
		p, err := checked(t)(Move(in, "n2", from))
		refusedWith(t, p, err, from.Host, "nothing to move", "`etcdadm member replace n2`")
	})
}

// A move cut once the data is on the new host and the peer URL changed
// goes on: the member starts there and the old host is cleaned.
func TestMoveContinues(t *testing.T) {
	_, in, from := moved(t)
	viewMember(t, in.Etcd, "n2").PeerURLs = []string{"https://" + newAddress + ":2380"}
	down(t, in.Etcd, "n2")
	old := from.Facts
	stop(old)
	old.Manifest = nil
	in.Hosts["n2"].Pending = []string{facts.PendingMoveFrom + addrOf("n2")}
	in.Hosts["n2"].DataDir = facts.DataDir{Exists: true, Entries: 1, HasWAL: true, MemberID: idOf(t, "n2"), ClusterID: testClusterID}
	from, err := MoveSource(in, "n2")
	if err != nil {
		t.Fatal(err)
	}
	from.Facts = old
	p := mustPlan(t)(Move(in, "n2", from))
	wantStages(t, p, "start n2 on its new host", "clean n2's old host", "finish the move")
}

// apply on an inventory whose member moved names member move, and adds no
// second member.
func TestApplyNamesMemberMove(t *testing.T) {
	_, in, _ := moved(t)
	p, err := build(t, in)
	refusedWith(t, p, err, "n2", "does not change in place", "`etcdadm member move n2`")
	if _, i := findOp(opsOf(p, "n2"), isKind(ops.KindAddLearner)); i >= 0 {
		t.Error("apply adds a second member")
	}
}
