package plan

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/snapshot"
)

// RestoreStaging is where a host receives its restored data before the
// swap: next to the data directory, so that the move stays on one file
// system.
func RestoreStaging(dataDir string) string {
	return path.Join(path.Dir(dataDir), "."+path.Base(dataDir)+".etcdadm-restore")
}

// RestoreSource is what a restore makes the members' data from: the
// snapshot File (its SHA256 and Size), made into a directory per member
// under Dir on this machine, as a new cluster with Token. Free is, by host,
// the room in bytes on the file system of RestoreStaging (what a cut run
// staged there counts as free); LocalFree the room where Dir is; a host
// missing from Free, or a LocalFree below zero, is unknown.
type RestoreSource struct {
	File, Dir, Token string
	SHA256           string
	Size             int64
	Free             map[string]int64
	LocalFree        int64
}

// RestoreMarker is the record of a restore on every host
// (facts.PendingRestore): the snapshot's sha256 and the cluster token,
// which together say which data the hosts get.
func RestoreMarker(sha256, token string) string { return facts.PendingRestore + sha256 + "-" + token }

// UnfinishedRestore is a restore the hosts' records say is not done.
type UnfinishedRestore struct {
	SHA256, Token, Marker string
	// Hosts hold the record.
	Hosts []string
}

// Unfinished reads the restore the hosts' records name; nil when no host
// holds one. Records of two restores are refused: which data is the
// cluster's is then for the operator to say.
func Unfinished(in Input) (*UnfinishedRestore, error) {
	var u *UnfinishedRestore
	for _, h := range in.Cluster.Spec.Hosts {
		hf := in.Hosts[h.Name]
		if hf == nil {
			continue
		}
		for _, m := range hf.Pending {
			rest, ok := strings.CutPrefix(m, facts.PendingRestore)
			if !ok {
				continue
			}
			sha, token, ok := strings.Cut(rest, "-")
			if !ok || len(sha) != 64 || token == "" {
				return nil, fmt.Errorf("%s holds a restore's record that names no snapshot and token (%s): look at %s", h.Name, m, ops.MarkerPath(facts.StateDir, m))
			}
			switch {
			case u == nil:
				u = &UnfinishedRestore{SHA256: sha, Token: token, Marker: m}
			case u.Marker != m:
				return nil, fmt.Errorf("the hosts hold the records of two restores (%s on %s, %s on %s): keep the one whose data the cluster must have and remove the other from %s on each host", u.Marker, strings.Join(u.Hosts, ", "), m, h.Name, facts.PendingDir)
			}
			u.Hosts = append(u.Hosts, h.Name)
		}
	}
	return u, nil
}

// RestoreToken is the cluster token a restore of src goes on with: the
// token of the unfinished restore the hosts' records name, or of this
// machine's record when no host has one yet, so that the hosts already
// restored keep their data; src.Token for a new restore. A record of
// another snapshot is refused.
func RestoreToken(in Input, src RestoreSource) (string, error) {
	u, err := Unfinished(in)
	switch {
	case err != nil:
		return "", err
	case u != nil && u.SHA256 != src.SHA256:
		return "", fmt.Errorf("a restore of another snapshot has not finished on %s (%s): finish it with `etcdadm snapshot restore %s --yes`, or go back to the data the cluster had with `etcdadm snapshot restore --abort --yes`, then restore %s",
			strings.Join(u.Hosts, ", "), describeSnapshot(in, u.SHA256), snapshotFile(in, u.SHA256), src.File)
	case u != nil:
		return u.Token, nil
	case in.Restore != nil && in.Restore.SHA256 == src.SHA256 && in.Restore.Token != "":
		return in.Restore.Token, nil
	}
	return src.Token, nil
}

// snapshotFile names the snapshot of sha256 for a command line: this
// machine's record says where it is.
func snapshotFile(in Input, sha256 string) string {
	if in.Restore != nil && in.Restore.SHA256 == sha256 && in.Restore.File != "" {
		return shell.Quote(in.Restore.File)
	}
	return "FILE"
}

func describeSnapshot(in Input, sha256 string) string {
	if in.Restore != nil && in.Restore.SHA256 == sha256 && in.Restore.File != "" {
		return fmt.Sprintf("snapshot %s, sha256 %s", in.Restore.File, sha256)
	}
	return "the snapshot whose sha256 is " + sha256
}

// restoreMembers are the members of the cluster a restore makes: every
// host of the inventory.
func restoreMembers(c *config.Cluster) []snapshot.RestoreMember {
	var out []snapshot.RestoreMember
	for _, ch := range c.Spec.Hosts {
		out = append(out, snapshot.RestoreMember{Name: ch.Name, PeerURL: manifests.PeerURL(ch)})
	}
	return out
}

// restored reports whether the host's data directory holds its member of
// the restored cluster.
func restored(hf *facts.Host, cluster, member uint64) bool {
	d := hf.DataDir
	return d.HasWAL && d.ClusterID == cluster && d.MemberID == member
}

// Restore plans `etcdadm snapshot restore`: every host records the restore
// first; each member's data directory is made here from the snapshot, and
// every host receives its own while the cluster still runs; then every
// member stops, its data goes under the backup directory (kept for good)
// and the restored data takes its place; then every member starts as a
// member of the new cluster the snapshot makes; last, the staged data and
// the records go. Every host must be reachable and able to run etcd, with
// the files of its plan but the manifest, and room for its data.
//
// A restore cut short is planned again from the hosts: the records give
// the token, so that a host whose data directory holds its restored member
// already (the member and cluster IDs the token gives) is neither made,
// pushed, stopped nor swapped again, and one that runs it is not started.
func Restore(in Input, src RestoreSource) (*Plan, error) {
	if err := in.check(); err != nil {
		return nil, err
	}
	if err := corrupt(in, "restore"); err != nil {
		return nil, err
	}
	c := in.Cluster
	rt := in.Runtime
	var refused refusals
	token, err := RestoreToken(in, src)
	if err != nil {
		refused.add("", "%v", err)
		return nil, refused.err("restore")
	}
	members := restoreMembers(c)
	cluster, ids, err := snapshot.Identity(members, token)
	if err != nil {
		return nil, err
	}
	marker := RestoreMarker(src.SHA256, token)
	p := newPlan(in)
	need := map[string]bool{}
	for _, ch := range c.Spec.Hosts {
		hf := in.Hosts[ch.Name]
		if hf == nil {
			refused.add(ch.Name, "cannot be reached: a restore replaces every member's data at once, so every host must be reachable")
			continue
		}
		preflight(in, &host{cfg: ch, facts: hf}, &refused)
		if c.Spec.Topology == config.TopologyExternal && rt.Name() == config.RuntimeKubelet && hf.KubeletActive != "active" {
			refused.add(ch.Name, "its kubelet is %s, so it would not start the restored member: start it (or run `etcdadm apply`) first", orUnknown(hf.KubeletActive))
		}
		hp, err := HostFiles(c, rt, in.PKI, ch, restoredMember(in, false), AllParts)
		if err != nil {
			return nil, err
		}
		Compare(&hp, hf)
		var drift []string
		for _, chg := range hp.Changed() {
			// The manifest (or the service's environment file) and
			// kubeadmcfg.yaml say how the member starts: the restore
			// writes both.
			if chg.Path != rt.StartPath(c) && chg.File.Part != PartKubeadmConfig {
				drift = append(drift, chg.Path)
			}
		}
		if len(drift) > 0 {
			refused.add(ch.Name, "its files are not as planned (%s): bring the hosts to the inventory first with `etcdadm apply`, then restore", strings.Join(drift, ", "))
		}
		p.Hosts = append(p.Hosts, hp)
		need[ch.Name] = !restored(hf, cluster, ids[ch.Name])
	}
	if len(refused) == 0 {
		checkRoom(in, src, need, &refused)
	}
	if err := refused.err("restore"); err != nil {
		p.Refused = true
		return p, err
	}
	dataDir := c.Spec.Etcd.DataDir
	staging := RestoreStaging(dataDir)
	record := allAtOnce("record the restore", "until it is done or aborted, no other command starts etcd on these hosts, and running the restore again finishes it")
	make := allAtOnce("make the data directories here", "etcd's own restore code, on this machine: neither the hosts nor the image need etcdutl")
	push := allAtOnce("push the restored data", "each host receives its member's data directory, made here from the snapshot, while the cluster still runs")
	stop := allAtOnce("stop every member", "a restore makes a new cluster: no member of the old one may run next to it")
	swap := allAtOnce("swap the data directories", "the old data is kept under the backup directory, never deleted nor pruned")
	start := allAtOnce("start the restored members", "they form the new cluster together: new member IDs, the snapshot's keys, the revision bumped")
	clean := allAtOnce("remove the staged data and the records", "every member of the restored cluster is healthy")
	restore := ops.RestoreData{Snapshot: src.File, Dir: src.Dir, Token: token, Members: members}
	stopEtcd := rt.StopOp()
	stopEtcd.Disruptive = true
	var made []string
	for i, ch := range c.Spec.Hosts {
		hf := in.Hosts[ch.Name]
		if !hf.HasPending(marker) {
			record.Hosts = append(record.Hosts, HostOps{Host: ch.Name, Ops: []Op{ops.Mark{Marker: marker, Why: "a restore of " + src.File + " (sha256 " + src.SHA256 + ") to cluster token " + token}}})
		}
		if need[ch.Name] {
			made = append(made, ch.Name)
			push.Hosts = append(push.Hosts, HostOps{Host: ch.Name, Ops: []Op{ops.PushData{Path: staging, Source: filepath.Join(src.Dir, ch.Name)}}})
			stop.Hosts = append(stop.Hosts, HostOps{Host: ch.Name, Ops: []Op{stopEtcd}})
			swap.Hosts = append(swap.Hosts, HostOps{Host: ch.Name, Ops: []Op{ops.SwapData{Path: dataDir, Source: staging, Keep: facts.KeptPreRestore, Ref: marker}}})
		}
		steps, err := startOps(in, &p.Hosts[i], ch, need[ch.Name] || !hf.RunsEtcd())
		if err != nil {
			return nil, err
		}
		if len(steps) > 0 {
			start.Hosts = append(start.Hosts, HostOps{Host: ch.Name, Ops: steps})
		}
		start.Wait = append(start.Wait, ch.Name)
		clean.Hosts = append(clean.Hosts, HostOps{Host: ch.Name, Ops: []Op{removeStaging(staging), ops.Unmark{Marker: marker}}})
	}
	if len(made) < len(members) {
		restore.Make = made
	}
	make.Hosts = []HostOps{{Host: LocalHost, Ops: []Op{restore}}}
	var stages []Stage
	if len(record.Hosts) > 0 {
		stages = append(stages, record)
	}
	if len(made) > 0 {
		stages = append(stages, make, push, stop, swap)
	}
	stages = append(stages, start, clean)
	if p.Stages, err = withControlPlaneStopped(in, stages, c.Spec.Hosts); err != nil {
		return nil, err
	}
	for _, m := range in.Etcd.Members {
		known := false
		for _, h := range c.Spec.Hosts {
			if m.HasPeerURL(manifests.PeerURL(h)) {
				known = true
			}
		}
		if !known {
			p.Warnings = append(p.Warnings, fmt.Sprintf("member %s (%s, %v) is not in the inventory: the restored cluster will not have it; stop it, or it keeps the old cluster's data", orID(m), m.HexID(), m.PeerURLs))
		}
	}
	if len(made) < len(members) {
		p.Warnings = append(p.Warnings, fmt.Sprintf("an unfinished restore of this snapshot goes on (cluster token %s): %d of %d hosts hold their restored data already", token, len(members)-len(made), len(members)))
	}
	return p, nil
}

// allAtOnce is a stage of every host at once.
func allAtOnce(name, why string) Stage { return Stage{Name: name, Rollout: AllAtOnce, Why: why} }

// restoredMember is how every member of a restored cluster starts (its
// data directory is a new cluster's), stamped for its first start or its
// retry.
func restoredMember(in Input, retry bool) Member {
	m := Bootstrap(in.Cluster)
	m.Restart = in.restartStamp(retry) + " (restored)"
	m.Why = "a new cluster restored from a snapshot; etcd reads these flags from its data directory, not from here"
	return m
}

// startOps write the kubeadm configuration of host ch when it differs, and,
// with start, start its stopped member on the files of hp (the manifest
// written, and written again under another name should the kubelet hold
// the first back).
func startOps(in Input, hp *Host, ch config.Host, start bool) ([]Op, error) {
	c, rt := in.Cluster, in.Runtime
	var steps []Op
	var mf *Change
	for j, chg := range hp.Changes {
		if chg.File.Part == PartKubeadmConfig && chg.Kind != Unchanged {
			steps = append(steps, ops.Write{Path: chg.Path, Change: &hp.Changes[j]})
		}
		if chg.Path == rt.StartPath(c) {
			mf = &hp.Changes[j]
		}
	}
	if !start {
		return steps, nil
	}
	if mf == nil {
		return nil, fmt.Errorf("no manifest planned for %s", ch.Name)
	}
	w := *mf
	w.Kind, w.OldSHA, w.OldMode = Create, "", ""
	restart, err := rt.StartOp(c, ch, &w, restoredMember(in, true))
	if err != nil {
		return nil, err
	}
	return append(steps, restart), nil
}

// removeStaging removes what a restore staged next to the data directory.
func removeStaging(staging string) ops.Run {
	return ops.Run{Command: "rm -rf -- " + shell.Quote(staging), Path: staging, Why: "nothing a restore pushed is left behind"}
}

// checkRoom refuses a restore without room for the data it makes: on each
// host that receives data, next to its data directory; here, where the
// data directories are made.
func checkRoom(in Input, src RestoreSource, need map[string]bool, refused *refusals) {
	if src.Size <= 0 {
		return
	}
	one := snapshot.DataDirSize(src.Size)
	staging := RestoreStaging(in.Cluster.Spec.Etcd.DataDir)
	n := 0
	for _, ch := range in.Cluster.Spec.Hosts {
		if !need[ch.Name] {
			continue
		}
		n++
		if free, ok := src.Free[ch.Name]; ok && free < one {
			refused.add(ch.Name, "has %s free on the file system of %s, and its restored data takes up to %s: make room there (or move the data directory's parent to a larger file system), then restore", ops.Bytes(free), path.Dir(staging), ops.Bytes(one))
		}
	}
	if want := int64(n) * one; src.LocalFree >= 0 && src.LocalFree < want && n > 0 {
		refused.add("", "this machine has %s free where the data directories are made (%s), and %d of them take up to %s: make room there, or point TMPDIR to a file system with room", ops.Bytes(src.LocalFree), filepath.Dir(src.Dir), n, ops.Bytes(want))
	}
}

// AbortRestore plans `etcdadm snapshot restore --abort`: the hosts go back
// to the data they had before the restore the records name. A member that
// runs the restored data stops; each host whose data directory holds its
// restored member, or nothing, gets its old data back from the backup
// directory that keeps it; every member that does not run starts on its
// old data; then the staged data and the records go. It is refused where
// it cannot go back: a host that cannot be reached, restored data whose
// old data is no longer kept, or a restored cluster that runs with quorum
// (what was written to it since would be lost).
func AbortRestore(in Input) (*Plan, error) {
	if err := in.check(); err != nil {
		return nil, err
	}
	if in.Etcd == nil {
		in.Etcd = &facts.Cluster{}
	}
	c, rt := in.Cluster, in.Runtime
	var refused refusals
	u, err := Unfinished(in)
	if err != nil {
		refused.add("", "%v", err)
		return nil, refused.err("abort")
	}
	p := newPlan(in)
	if u == nil {
		if in.Restore == nil {
			refused.add("", "no restore to abort: no host holds a restore's record, and this machine has none")
			return nil, refused.err("abort")
		}
		p.Warnings = append(p.Warnings, fmt.Sprintf("no host holds the record of the restore of %s: it stopped before changing any host; only this machine's record goes", in.Restore.File))
		return p, nil
	}
	cluster, ids, err := snapshot.Identity(restoreMembers(c), u.Token)
	if err != nil {
		return nil, err
	}
	if e := in.Etcd; e.Known() && e.HasQuorum() && slices.ContainsFunc(e.Members, func(m etcdclient.Member) bool { return ids[m.Name] == m.ID && m.ID != 0 }) {
		refused.add("", "the restored cluster runs with quorum (%d of %d voting members healthy): going back now would drop what was written to it since; finish the restore with `etcdadm snapshot restore %s --yes`", e.HealthyVoters(), len(e.Voters()), snapshotFile(in, u.SHA256))
	}
	dataDir := c.Spec.Etcd.DataDir
	staging := RestoreStaging(dataDir)
	stop := allAtOnce("stop the restored members", "their data goes back to what it was before the restore")
	back := allAtOnce("put the old data back", "from the backup directory that kept it; the restored data goes under this run's")
	start := allAtOnce("start the members on their old data", "they form the cluster they were before the restore")
	clean := allAtOnce("remove the staged data and the records", "the restore is aborted")
	stopEtcd := rt.StopOp()
	stopEtcd.Disruptive = true
	for _, ch := range c.Spec.Hosts {
		hf := in.Hosts[ch.Name]
		if hf == nil {
			refused.add(ch.Name, "cannot be reached: every host must be, to go back to the data of all")
			continue
		}
		isNew := restored(hf, cluster, ids[ch.Name])
		runs := hf.RunsEtcd()
		if isNew || hf.DataDir.Empty() {
			k, ok := keptBefore(hf, dataDir, u.Marker)
			if !ok {
				what := "holds its restored member already"
				if !isNew {
					what = "is empty"
				}
				refused.add(ch.Name, "its data directory %s %s, and no run directory under %s keeps its old data (a %s mark for %s): it cannot go back; finish the restore with `etcdadm snapshot restore %s --yes`",
					dataDir, what, facts.BackupDir, facts.KeptPreRestore, u.Marker, snapshotFile(in, u.SHA256))
				continue
			}
			if runs || hf.Manifest != nil {
				stop.Hosts = append(stop.Hosts, HostOps{Host: ch.Name, Ops: []Op{stopEtcd}})
				runs = false
			}
			back.Hosts = append(back.Hosts, HostOps{Host: ch.Name, Ops: []Op{ops.SwapData{Path: dataDir, Source: path.Join(k.Dir, dataDir), Release: k.Dir,
				Why: "the data the host had before the restore, from " + k.Dir}}})
		}
		hp, err := HostFiles(c, rt, in.PKI, ch, restoredMember(in, false), AllParts)
		if err != nil {
			return nil, err
		}
		Compare(&hp, hf)
		p.Hosts = append(p.Hosts, hp)
		if !runs {
			steps, err := startOps(in, &p.Hosts[len(p.Hosts)-1], ch, true)
			if err != nil {
				return nil, err
			}
			start.Hosts = append(start.Hosts, HostOps{Host: ch.Name, Ops: steps})
		}
		start.Wait = append(start.Wait, ch.Name)
		steps := []Op{removeStaging(staging)}
		if hf.HasPending(u.Marker) {
			steps = append(steps, ops.Unmark{Marker: u.Marker})
		}
		clean.Hosts = append(clean.Hosts, HostOps{Host: ch.Name, Ops: steps})
	}
	if err := refused.err("abort"); err != nil {
		return nil, err
	}
	for _, st := range []Stage{stop, back} {
		if len(st.Hosts) > 0 {
			p.Stages = append(p.Stages, st)
		}
	}
	p.Stages = append(p.Stages, start, clean)
	// The restore may have stopped the control plane before it was cut.
	held, err := restartControlPlane(in, Servers(c.Spec.Hosts))
	if err != nil {
		return nil, err
	}
	if held != nil {
		p.Stages = append(p.Stages, *held)
	}
	return p, nil
}

// keptBefore is the newest run directory of hf that keeps the data
// directory's contents from before the restore marker names.
func keptBefore(hf *facts.Host, dataDir, marker string) (facts.Kept, bool) {
	var best facts.Kept
	for _, k := range hf.Kept {
		if k.What == facts.KeptPreRestore && k.Path == dataDir && k.Ref == marker && k.Dir > best.Dir {
			best = k
		}
	}
	return best, best.Dir != ""
}

// checkRestore refuses to start etcd while a restore is not finished: a
// host or this machine holds its record, or the data directories hold
// different clusters (a restore cut short without its records). Host
// except, the one a command is about, is left out of the comparison: its
// data is what the command deals with; so is a host whose etcd runs.
func checkRestore(in Input, refused *refusals, except string) {
	u, err := Unfinished(in)
	switch {
	case err != nil:
		refused.add("", "%v", err)
		return
	case u != nil:
		refused.add("", "a restore of %s (cluster token %s) has not finished on %s: no etcd starts until it is done. Finish it with `etcdadm snapshot restore %s --yes`, or go back to the old data with `etcdadm snapshot restore --abort --yes`",
			describeSnapshot(in, u.SHA256), u.Token, strings.Join(u.Hosts, ", "), snapshotFile(in, u.SHA256))
		return
	case in.Restore != nil:
		refused.add("", "this machine's record (%s) says a restore of %s began and did not finish (no host holds its record, so none was stopped): run `etcdadm snapshot restore %s --yes` to do it, or `etcdadm snapshot restore --abort --yes` to drop it",
			snapshot.RecordName, in.Restore.File, shell.Quote(in.Restore.File))
		return
	}
	byCluster := map[uint64][]string{}
	var order []uint64
	for _, h := range in.Cluster.Spec.Hosts {
		hf := in.Hosts[h.Name]
		// A host whose etcd runs is not one a restore left stopped: what
		// it runs is matched to this cluster by its identity instead.
		if hf == nil || h.Name == except || !hf.DataDir.HasWAL || hf.DataDir.ClusterID == 0 || hf.RunsEtcd() {
			continue
		}
		id := hf.DataDir.ClusterID
		if _, ok := byCluster[id]; !ok {
			order = append(order, id)
		}
		byCluster[id] = append(byCluster[id], h.Name)
	}
	if len(order) < 2 {
		return
	}
	// The largest group, the first in the inventory on a tie, is "the others".
	main := order[0]
	for _, id := range order {
		if len(byCluster[id]) > len(byCluster[main]) {
			main = id
		}
	}
	for _, id := range order {
		if id == main {
			continue
		}
		for _, name := range byCluster[id] {
			refused.add(name, "its data directory holds another cluster (%s) than %s (%s): a restore cut short leaves some hosts on the restored data and the others on the old, and starting them would let the larger side win. If a restore was cut, finish it with `etcdadm snapshot restore FILE --yes` (the same snapshot); if this data is not this cluster's, move it aside with `etcdadm reset %s`",
				etcdclient.FormatID(id), strings.Join(byCluster[main], ", "), etcdclient.FormatID(main), name)
		}
	}
}

// unfinishedRestore is checkRestore's refusal of a command, nil when no
// restore is unfinished.
func unfinishedRestore(in Input, what, except string) error {
	var refused refusals
	checkRestore(in, &refused, except)
	return refused.err(what)
}

func orUnknown(s string) string {
	if s == "" {
		return "in an unknown state"
	}
	return s
}
