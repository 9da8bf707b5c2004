package plan

import (
	"fmt"
	"maps"
	"slices"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

// target is the member a membership command names.
type target struct {
	name   string
	host   *config.Host
	facts  *facts.Host
	member etcdclient.Member
	listed bool
}

// find resolves name: an inventory host (by name) or a member (by name or hex ID).
func find(in Input, name string) target {
	t := target{name: name}
	if h, ok := in.Cluster.Host(name); ok {
		t.host = &h
		t.facts = in.Hosts[name]
		t.member, t.listed = in.Etcd.Member(name, manifests.PeerURL(h))
		return t
	}
	for _, m := range in.Etcd.Members {
		if m.Name == name || m.HexID() == name {
			t.member, t.listed = m, true
		}
	}
	return t
}

// membership checks the input of a membership command (a cluster not
// asked is one that said nothing) and finds the member or host it names.
func membership(in Input, name string) (Input, target, error) {
	if err := in.check(); err != nil {
		return in, target{}, err
	}
	if in.Etcd == nil {
		in.Etcd = &facts.Cluster{}
	}
	if err := corrupt(in, "this command"); err != nil {
		return in, target{}, err
	}
	if err := unfinishedRestore(in, "this command", name); err != nil {
		return in, target{}, err
	}
	return in, find(in, name), nil
}

func (t target) reachable() bool { return t.facts != nil }

// holdsEtcd reports whether the host has anything of etcd's left.
func (t target) holdsEtcd() bool {
	if t.facts == nil {
		return false
	}
	if t.facts.Manifest != nil || t.facts.RunsEtcd() || !t.facts.DataDir.Empty() {
		return true
	}
	for p, st := range t.facts.Files {
		if !st.Dir && p != "" {
			return true
		}
	}
	return len(t.facts.Pending) > 0
}

func newPlan(in Input) *Plan {
	return &Plan{Cluster: in.Cluster.Metadata.Name, Topology: in.Cluster.Spec.Topology}
}

// Remove plans `etcdadm member remove NAME`: hand leadership over if it
// leads, remove it by ID through the other members, then, if its host can
// be reached, stop its etcd and move its data directory, manifest,
// certificates and kubelet files under the backup directory.
func Remove(in Input, name string) (*Plan, error) {
	in, t, err := membership(in, name)
	if err != nil {
		return nil, err
	}
	var refused refusals
	p := newPlan(in)
	switch {
	case t.host == nil && !t.listed:
		refused.add(name, "is neither a host of the inventory nor a member of the cluster")
		return nil, refused.err("member remove")
	case !in.Etcd.Known() || in.Etcd.Serializable:
		refused.add("", "no quorum to remove a member with (%s): bring the members back first", quorumWhy(in))
		return nil, refused.err("member remove")
	}
	if t.host != nil && t.reachable() {
		// The member its host runs, or holds, known to the member list by
		// another name or peer URL, is the one named.
		if m, ok := identify(in, *t.host, t.facts).member(in); ok && !t.listed {
			t.member, t.listed = m, true
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s's host holds member %s (%s, peer URLs %v): the member list knows it by that name and address; it is the member removed", name, orID(m), m.HexID(), m.PeerURLs))
		}
		want := uint64(0)
		if t.listed {
			want = t.member.ID
		}
		checkIdentity(in, *t.host, t.facts, in.Etcd.ClusterID, want, false, &refused)
		if err := refused.err("member remove"); err != nil {
			return nil, err
		}
	}
	if !t.listed {
		if t.reachable() && t.holdsEtcd() {
			p.Warnings = append(p.Warnings, name+" is not a member of the cluster any more; its host is cleaned")
			p.Stages = []Stage{{Name: "clean " + name, Rollout: OneAtATime, Hosts: []HostOps{{Host: name, Ops: cleanOps(in, t.facts, true)}}}}
		} else {
			p.Warnings = append(p.Warnings, name+" is not a member of the cluster and its host holds nothing of etcd: nothing to do")
		}
		return p, nil
	}
	if err := checkRemoval(in, t, &refused); err != nil {
		return nil, err
	}
	steps := []Op{}
	if !t.member.Learner {
		steps = append(steps, ops.MoveLeader{Member: name, MemberID: t.member.HexID(), Why: "a removed leader would cost an election"})
	}
	steps = append(steps, ops.RemoveMember{Member: name, MemberID: t.member.HexID()})
	switch {
	case t.host == nil:
		p.Warnings = append(p.Warnings, name+" is not in the inventory: it is removed by ID and its host is not cleaned")
	case !t.reachable():
		p.Warnings = append(p.Warnings, fmt.Sprintf("%s cannot be reached: it is removed by ID, but its host is not cleaned; when it is back, run `etcdadm reset %s` before it joins again", name, name))
	default:
		steps = append(steps, cleanOps(in, t.facts, true)...)
	}
	remaining := remainingVoters(in, t.member.ID)
	if len(remaining) > 0 {
		steps = append(steps, ops.WaitCluster{Members: remaining})
	}
	p.Stages = []Stage{{Name: "remove member " + name, Rollout: OneAtATime, Why: "the other members keep quorum without it",
		Hosts: []HostOps{{Host: name, Ops: steps}}}}
	final := without(in.Cluster.Spec.Hosts, name)
	urls := slices.Clone(t.member.ClientURLs)
	if t.host != nil {
		urls = append(urls, manifests.ClientURL(*t.host))
	}
	if err := aroundMembership(in, p, final, goneURLs(final, urls...)); err != nil {
		return nil, err
	}
	return p, nil
}

// checkRemoval refuses a removal that would cost quorum or leave no member.
func checkRemoval(in Input, t target, refused *refusals) error {
	if t.member.Learner {
		return nil
	}
	voters := in.Etcd.Voters()
	if len(voters) <= 1 {
		refused.add(t.name, "is the cluster's last voting member: removing it would end the cluster")
		return refused.err("member remove")
	}
	healthy := 0
	for _, m := range voters {
		if m.ID != t.member.ID && in.Etcd.Healthy(m.ID) {
			healthy++
		}
	}
	if q := facts.Quorum(len(voters) - 1); healthy < q {
		refused.add(t.name, "removing it would leave %d healthy of %d voting members, below the quorum of %d%s; bring them back first",
			healthy, len(voters)-1, q, unhealthyList(in))
		return refused.err("member remove")
	}
	return nil
}

func quorumWhy(in Input) string {
	switch {
	case in.Etcd.ListError != "":
		return in.Etcd.ListError
	case in.Etcd.Serializable:
		return "only " + in.Etcd.ListFrom + " answered, without a leader"
	}
	return "no member answered"
}

// remainingVoters are the inventory hosts whose members are healthy voters,
// without the member id.
func remainingVoters(in Input, id uint64) []string {
	var out []string
	for _, h := range in.Cluster.Spec.Hosts {
		m, ok := in.Etcd.Member(h.Name, manifests.PeerURL(h))
		if ok && m.ID != id && !m.Learner && in.Etcd.Healthy(m.ID) {
			out = append(out, h.Name)
		}
	}
	return out
}

// cleanOps stop a host's etcd and move everything etcdadm put there under
// the backup directory: data, manifest, certificates, configuration, and
// (all, for a host that leaves) the kubelet's files, then stop the kubelet
// that only ran etcd.
func cleanOps(in Input, hf *facts.Host, all bool) []Op {
	c, rt := in.Cluster, in.Runtime
	var steps []Op
	if hf.Manifest != nil || hf.RunsEtcd() {
		steps = append(steps, rt.StopOp())
	}
	if !hf.DataDir.Empty() {
		steps = append(steps, ops.Backup{Path: c.Spec.Etcd.DataDir, Why: "etcd's data"})
	}
	if !all {
		return steps
	}
	manifest := rt.StartPath(c)
	var paths []string
	for p, st := range hf.Files {
		if st.Dir || p == manifest {
			continue
		}
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		steps = append(steps, ops.Backup{Path: p})
	}
	for _, m := range hf.Pending {
		steps = append(steps, ops.Unmark{Marker: m})
	}
	return append(steps, rt.CleanOps(c, paths)...)
}

// stopped is the host as it will be once its member is stopped: no
// manifest (or environment file), no etcd process; its data is kept.
func stopped(in Input, hf *facts.Host) *facts.Host {
	out := *hf
	out.Manifest, out.Etcd = nil, nil
	out.Files = maps.Clone(hf.Files)
	delete(out.Files, in.Runtime.StartPath(in.Cluster))
	return &out
}

// withoutMember is the host as it will be once its old member is gone:
// stopped, and its data directory emptied.
func withoutMember(in Input, hf *facts.Host) *facts.Host {
	out := stopped(in, hf)
	out.DataDir = facts.DataDir{Exists: true}
	return out
}

// Reset plans `etcdadm reset NAME`: clean a host that is not a member.
func Reset(in Input, name string) (*Plan, error) {
	in, t, err := membership(in, name)
	if err != nil {
		return nil, err
	}
	var refused refusals
	switch {
	case t.host == nil:
		refused.add(name, "is not a host of the inventory: reset needs to reach it")
	case !t.reachable():
		refused.add(name, "cannot be reached")
	case !in.Etcd.Known():
		refused.add(name, "no member answers (%s), so it cannot be told whether %s is still a member", quorumWhy(in), name)
	case t.listed:
		refused.add(name, "is member %s of the cluster: remove it first with `etcdadm member remove %s`", t.member.HexID(), name)
	default:
		id := identify(in, *t.host, t.facts)
		if m, ok := id.member(in); ok {
			refused.add(name, "%s, which is member %s (%s, peer URLs %v) of this cluster: remove it first with `etcdadm member remove %s`", id, orID(m), m.HexID(), m.PeerURLs, name)
			break
		}
		checkIdentity(in, *t.host, t.facts, in.Etcd.ClusterID, 0, true, &refused)
	}
	if err := refused.err("reset"); err != nil {
		return nil, err
	}
	p := newPlan(in)
	if id := identify(in, *t.host, t.facts); id.foreign(in.Etcd.ClusterID) {
		p.Warnings = append(p.Warnings, fmt.Sprintf("%s: %s, of another cluster than this one (%s): it goes under the backup directory", name, id, etcdclient.FormatID(in.Etcd.ClusterID)))
	}
	if !t.holdsEtcd() {
		p.Warnings = append(p.Warnings, name+" holds nothing of etcd: nothing to do")
		return p, nil
	}
	p.Stages = []Stage{{Name: "reset " + name, Rollout: OneAtATime, Why: "not a member: its etcd files go under the backup directory",
		Hosts: []HostOps{{Host: name, Ops: cleanOps(in, t.facts, true)}}}}
	return p, nil
}

// Replace plans `etcdadm member replace NAME` for a failed member: remove
// its stale ID, move what is left of its data aside, then add it again as a
// learner, with the inventory's address, and promote it.
func Replace(in Input, name string, force bool) (*Plan, error) {
	in, t, err := membership(in, name)
	if err != nil {
		return nil, err
	}
	var refused refusals
	switch {
	case t.host == nil:
		refused.add(name, "is not a host of the inventory: add it there with its (new) address first")
	case !t.reachable():
		refused.add(name, "cannot be reached: the replacement member must be started on it")
	case !in.Etcd.Known() || in.Etcd.Serializable:
		refused.add("", "no quorum to replace a member with (%s)", quorumWhy(in))
	}
	if err := refused.err("member replace"); err != nil {
		return nil, err
	}
	if t.listed && in.Etcd.Healthy(t.member.ID) && !force {
		refused.add(name, "member %s is healthy: replace is for a failed member (pass --force to replace it anyway)", t.member.HexID())
		return nil, refused.err("member replace")
	}
	want := uint64(0)
	if t.listed {
		want = t.member.ID
	}
	if checkIdentity(in, *t.host, t.facts, in.Etcd.ClusterID, want, false, &refused); len(refused) > 0 {
		return nil, refused.err("member replace")
	}
	if t.listed {
		if err := checkRemoval(in, t, &refused); err != nil {
			return nil, err
		}
	}
	p := newPlan(in)
	var stages []Stage
	members := in.Etcd.Members
	if t.listed {
		var steps []Op
		if in.Etcd.Healthy(t.member.ID) && !t.member.Learner {
			steps = append(steps, ops.MoveLeader{Member: name, MemberID: t.member.HexID(), Why: "a removed leader would cost an election"})
		}
		steps = append(steps, ops.RemoveMember{Member: name, MemberID: t.member.HexID(), Why: "the member to replace"})
		steps = append(steps, cleanOps(in, t.facts, false)...)
		stages = append(stages, Stage{Name: "remove the failed member " + name, Rollout: OneAtATime, Hosts: []HostOps{{Host: name, Ops: steps}}})
		members = slices.DeleteFunc(slices.Clone(members), func(m etcdclient.Member) bool { return m.ID == t.member.ID })
	}
	hf := withoutMember(in, t.facts)
	peer := manifests.PeerURL(*t.host)
	m := Member{InitialCluster: etcdclient.InitialCluster(members, name, peer), State: manifests.StateExisting, Why: "joins the running cluster as a learner, replacing the failed member"}
	hp, err := HostFiles(in.Cluster, in.Runtime, in.PKI, *t.host, m, AllParts)
	if err != nil {
		return nil, err
	}
	Compare(&hp, hf)
	p.Hosts = []Host{hp}
	h := &host{cfg: *t.host, facts: hf, role: roleJoin, plan: &p.Hosts[0]}
	if !t.listed {
		// Removed before (while its host was down, say): what is left of
		// its member is stale, and etcd would refuse to start on it.
		h.clean = cleanOps(in, t.facts, false)
	}
	if h.work, err = in.Runtime.Work(runtimeHost(in, h)); err != nil {
		return nil, fmt.Errorf("plan for %s: %w", name, err)
	}
	voters := remainingVoters(in, t.member.ID)
	jin := in
	jin.Etcd = &facts.Cluster{Members: members, Status: in.Etcd.Status}
	stages = append(stages, join(jin, h, voters, 0))
	p.Stages = stages
	p.Warnings = append(p.Warnings, unknownMembers(in)...)
	final := in.Cluster.Spec.Hosts
	if err := aroundMembership(in, p, final, goneURLs(final, t.member.ClientURLs...)); err != nil {
		return nil, err
	}
	return p, nil
}
