package plan

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"github.com/etcdadm-io/etcdadm/pkg/config"
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
// snapshot File, made into a directory per member under Dir on this
// machine, as a new cluster with Token.
type RestoreSource struct {
	File, Dir, Token string
}

// Restore plans `etcdadm snapshot restore`: each member's data directory
// is made here from the snapshot, and every host receives its own while
// the cluster still runs; then every member stops, its data goes under the
// backup directory and the restored data takes its place; then every
// member starts as a member of the new cluster the snapshot makes. Every
// host must be reachable and able to run etcd, with the files of its plan
// but the manifest.
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
	p := newPlan(in)
	member := Bootstrap(c)
	member.Restart = in.restartStamp(false) + " (restored)"
	member.Why = "a new cluster restored from a snapshot; etcd reads these flags from its data directory, not from here"
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
		hp, err := HostFiles(c, rt, in.PKI, ch, member, AllParts)
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
	}
	if err := refused.err("restore"); err != nil {
		p.Refused = true
		return p, err
	}
	dataDir := c.Spec.Etcd.DataDir
	staging := RestoreStaging(dataDir)
	make := Stage{Name: "make the data directories here", Rollout: AllAtOnce,
		Why: "etcd's own restore code, on this machine: neither the hosts nor the image need etcdutl"}
	restore := ops.RestoreData{Snapshot: src.File, Dir: src.Dir, Token: src.Token}
	for _, ch := range c.Spec.Hosts {
		restore.Members = append(restore.Members, snapshot.RestoreMember{Name: ch.Name, PeerURL: manifests.PeerURL(ch)})
	}
	make.Hosts = []HostOps{{Host: LocalHost, Ops: []Op{restore}}}
	push := Stage{Name: "push the restored data", Rollout: AllAtOnce,
		Why: "each host receives its member's data directory, made here from the snapshot, while the cluster still runs"}
	stop := Stage{Name: "stop every member", Rollout: AllAtOnce,
		Why: "a restore makes a new cluster: no member of the old one may run next to it"}
	swap := Stage{Name: "swap the data directories", Rollout: AllAtOnce,
		Why: "the old data is kept under the backup directory, never deleted"}
	start := Stage{Name: "start the restored members", Rollout: AllAtOnce,
		Why: "they form the new cluster together: new member IDs, the snapshot's keys, the revision bumped"}
	stopEtcd := rt.StopOp()
	stopEtcd.Disruptive = true
	for i, ch := range c.Spec.Hosts {
		push.Hosts = append(push.Hosts, HostOps{Host: ch.Name, Ops: []Op{ops.PushData{Path: staging, Source: filepath.Join(src.Dir, ch.Name)}}})
		stop.Hosts = append(stop.Hosts, HostOps{Host: ch.Name, Ops: []Op{stopEtcd}})
		swap.Hosts = append(swap.Hosts, HostOps{Host: ch.Name, Ops: []Op{ops.SwapData{Path: dataDir, Source: staging}}})
		var mf *Change
		for j, chg := range p.Hosts[i].Changes {
			if chg.Path == rt.StartPath(c) {
				mf = &p.Hosts[i].Changes[j]
			}
		}
		if mf == nil {
			return nil, fmt.Errorf("no manifest planned for %s", ch.Name)
		}
		w := *mf
		w.Kind, w.OldSHA, w.OldMode = Create, "", ""
		again := member
		again.Restart = in.restartStamp(true) + " (restored)"
		// A restart of a stopped member: the manifest is written, and
		// written again under another name should the kubelet hold the
		// first back.
		var steps []Op
		for j, chg := range p.Hosts[i].Changes {
			if chg.File.Part == PartKubeadmConfig && chg.Kind != Unchanged {
				steps = append(steps, ops.Write{Path: chg.Path, Change: &p.Hosts[i].Changes[j]})
			}
		}
		restart, err := rt.StartOp(c, ch, &w, again)
		if err != nil {
			return nil, err
		}
		steps = append(steps, restart)
		start.Hosts = append(start.Hosts, HostOps{Host: ch.Name, Ops: steps})
		start.Wait = append(start.Wait, ch.Name)
	}
	stages, err := withControlPlaneStopped(in, []Stage{make, push, stop, swap, start}, c.Spec.Hosts)
	if err != nil {
		return nil, err
	}
	p.Stages = stages
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
	return p, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "in an unknown state"
	}
	return s
}
