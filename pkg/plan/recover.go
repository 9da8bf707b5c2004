package plan

import (
	"fmt"
	"slices"
	"strings"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

// quorumLost refuses a recovery while the cluster may still have quorum:
// only a loss the facts confirmed (no member named a leader in two reads
// a few seconds apart) is one.
func quorumLost(e *facts.Cluster) error {
	switch {
	case e.QuorumLost:
		return nil
	case e.HasQuorum():
		return fmt.Errorf("the cluster has quorum (%d of %d voting members healthy): recover is for a cluster that lost it for good; a failed member is replaced with `etcdadm member replace NAME`", e.HealthyVoters(), len(e.Voters()))
	}
	for _, st := range e.Status {
		if st.LeaderID != 0 {
			return fmt.Errorf("member %s follows leader %s, so the cluster may still have quorum: look at the members, and run again once none has a leader", st.Name, etcdclient.FormatID(st.LeaderID))
		}
	}
	why := e.QuorumWhy
	if why == "" {
		why = "it was read once"
	}
	return fmt.Errorf("the loss of quorum is not confirmed (%s): look at the members, and run again", why)
}

// recoveryHost is the host whose data a recovery in progress keeps: the
// one that holds its record, "" for none.
func recoveryHost(in Input) string {
	for _, h := range in.Cluster.Spec.Hosts {
		if hf := in.Hosts[h.Name]; hf != nil && hf.HasPending(facts.PendingRecover) {
			return h.Name
		}
	}
	return ""
}

// checkRecovery refuses other changes while a recovery is not finished.
func checkRecovery(in Input, refused *refusals) {
	if src := recoveryHost(in); src != "" {
		refused.add(src, "a recovery from its data has not finished: run `etcdadm recover` again to finish it")
	}
}

// rejoinRecord names the host whose record says that h's data is the old
// member a recovery of this cluster dropped, "" for none: the record, and
// a WAL of the same cluster as the recovered host's.
func rejoinRecord(in Input, h *host) string {
	cid := h.facts.DataDir.ClusterID
	if cid == 0 {
		return ""
	}
	for _, ch := range in.Cluster.Spec.Hosts {
		hf := in.Hosts[ch.Name]
		if hf != nil && ch.Name != h.cfg.Name && hf.HasPending(facts.PendingRejoin+h.cfg.Name) && hf.DataDir.ClusterID == cid {
			return ch.Name
		}
	}
	return ""
}

// markRejoin makes h, whose data is an old member a recovery dropped, join
// again: its etcd stopped and its data moved under the backup directory
// first, then planned as a host without a member.
func markRejoin(in Input, h *host, record string) {
	h.role, h.rejoin = roleJoin, record
	h.clean = keptForGood(in, cleanOps(in, h.facts, false), record)
	h.facts = withoutMember(in, h.facts)
}

// keptForGood marks the backup of the data directory among steps as data
// a recovery from the data of host src replaced: pruning never removes it.
func keptForGood(in Input, steps []Op, src string) []Op {
	for i, op := range steps {
		if b, ok := op.(ops.Backup); ok && b.Path == in.Cluster.Spec.Etcd.DataDir {
			b.Keep, b.Ref = facts.KeptPreRecovery, "recover-from-"+src
			steps[i] = b
		}
	}
	return steps
}

// recovery is what Recover plans from: the host whose data is kept, its
// member, and whether it already runs as the recovered cluster.
type recovery struct {
	in     Input
	src    config.Host
	facts  *facts.Host
	member etcdclient.Member
	// formed: the recovered cluster runs (a cut run got past its first
	// start); it has quorum again.
	formed bool
}

// Recover plans `etcdadm recover [--from NAME]` for a cluster that lost
// quorum for good. The record of the recovery goes on the kept host first;
// every member stops (its manifest kept under the backup directory); the
// kept data starts alone with --force-new-cluster, which removes every
// other member from it; it restarts without the flag; then every other
// host of the inventory that can be reached joins again, one at a time, as
// a learner promoted once caught up, its old data moved under the backup
// directory. A host that cannot be reached is left out: `etcdadm apply`
// adds it once it is back. A run cut short goes on when run again: the
// record says where from.
func Recover(in Input, from string) (*Plan, error) {
	if err := in.check(); err != nil {
		return nil, err
	}
	if in.Etcd == nil {
		in.Etcd = &facts.Cluster{}
	}
	if err := unfinishedRestore(in, "recover", ""); err != nil {
		return nil, err
	}
	c := in.Cluster
	var refused refusals
	p := newPlan(in)
	name := recoveryHost(in)
	switch {
	case name != "" && from != "" && from != name:
		refused.add(from, "--from %s: a recovery from %s's data has not finished; run `etcdadm recover` without --from to finish it", from, name)
	case name == "":
		if err := quorumLost(in.Etcd); err != nil {
			refused.add("", "%v", err)
			return nil, refused.err("recover")
		}
		var notes []string
		name, notes = recoverySource(in, from, &refused)
		p.Warnings = append(p.Warnings, notes...)
	}
	if err := refused.err("recover"); err != nil {
		return nil, err
	}
	r := &recovery{in: in, facts: in.Hosts[name]}
	r.src, _ = c.Host(name)
	r.formed = recoveryHost(in) != "" && in.Etcd.HasQuorum()
	r.check(&refused)
	if err := refused.err("recover"); err != nil {
		return nil, err
	}
	stages, err := r.stages(p)
	if err != nil {
		return nil, err
	}
	p.Stages = stages
	// Without quorum no kube-apiserver is ready: they follow once it is back.
	if err := aroundMembership(in, p, c.Spec.Hosts, nil); err != nil {
		return nil, err
	}
	return p, nil
}

// recoverySource is the host whose data is kept, from, or the member that
// answers with the highest raft index, and what each member's index says.
func recoverySource(in Input, from string, refused *refusals) (string, []string) {
	c, e := in.Cluster, in.Etcd
	index := map[string]uint64{}
	best := ""
	for _, h := range c.Spec.Hosts {
		for _, st := range e.Status {
			if st.Name == h.Name && in.Hosts[h.Name] != nil && !st.Learner {
				index[h.Name] = st.RaftIndex
				if best == "" || st.RaftIndex > index[best] {
					best = h.Name
				}
			}
		}
	}
	if from != "" {
		_, ok := c.Host(from)
		switch {
		case !ok:
			refused.add("", "--from %s: no such host in the inventory; name one of %s", from, strings.Join(hostNames(c), ", "))
		case in.Hosts[from] == nil:
			refused.add(from, "--from %s: the host cannot be reached, and the recovered cluster starts from its data; name a host that can be reached", from)
		case !in.Hosts[from].DataDir.HasWAL:
			refused.add(from, "--from %s: its data directory %s holds no etcd member; name a host that has its data", from, c.Spec.Etcd.DataDir)
		default:
			best = from
		}
		if best != from {
			return "", nil
		}
	}
	if best == "" {
		refused.add("", "no member runs, so none can tell how far its data goes: name the host whose data to keep with --from NAME (%s)", strings.Join(hostNames(c), ", "))
		return "", nil
	}
	var parts []string
	for _, h := range c.Spec.Hosts {
		i, ok := index[h.Name]
		switch {
		case h.Name == best && ok:
			parts = append(parts, fmt.Sprintf("%s %d (kept)", h.Name, i))
		case h.Name == best:
			parts = append(parts, h.Name+" unknown, not running (kept)")
		case ok && i > index[best] && index[best] > 0:
			parts = append(parts, fmt.Sprintf("%s %d (%d ahead: lost)", h.Name, i, i-index[best]))
		case ok && index[best] > 0:
			parts = append(parts, fmt.Sprintf("%s %d (%d behind)", h.Name, i, index[best]-i))
		case ok:
			parts = append(parts, fmt.Sprintf("%s %d", h.Name, i))
		case in.Hosts[h.Name] == nil:
			parts = append(parts, h.Name+" unknown, cannot be reached")
		default:
			parts = append(parts, h.Name+" unknown, not running")
		}
	}
	return best, []string{"raft indexes: " + strings.Join(parts, ", ") + "; what any member had beyond " + best + "'s data is lost"}
}

func hostNames(c *config.Cluster) []string {
	var out []string
	for _, h := range c.Spec.Hosts {
		out = append(out, h.Name)
	}
	return out
}

// check refuses what a recovery cannot do safely: a kept host that cannot
// be reached or holds no member of the cluster, hosts etcdadm cannot work
// on, another cluster's data, and members the inventory does not name
// that still run.
func (r *recovery) check(refused *refusals) {
	in, c, e := r.in, r.in.Cluster, r.in.Etcd
	name, peer := r.src.Name, manifests.PeerURL(r.src)
	hf := r.facts
	if hf == nil {
		refused.add(name, "cannot be reached: its data is what the cluster is recovered from")
		return
	}
	dd := hf.DataDir
	m, listed := e.Member(name, peer)
	switch {
	case !dd.HasWAL || dd.MemberID == 0:
		refused.add(name, "its data directory %s holds no etcd member whose ID can be read, so there is nothing to recover from", c.Spec.Etcd.DataDir)
	case listed && m.ID != dd.MemberID:
		refused.add(name, "its data directory holds member %s, but the cluster knows %s as member %s: it is not this cluster's data", etcdclient.FormatID(dd.MemberID), name, m.HexID())
	case listed && m.Learner:
		refused.add(name, "is a learner, which cannot lead a cluster of its own: name a voting member with --from")
	case listed && !m.HasPeerURL(peer):
		refused.add(name, "the cluster knows it at %v, the inventory at %s: the recovered member keeps the address its data has; put that address back in the inventory", m.PeerURLs, peer)
	case e.Known() && !listed:
		refused.add(name, "the member list the others give has no member %s: its data is not this cluster's", name)
	}
	r.member = etcdclient.Member{ID: dd.MemberID, Name: name, PeerURLs: []string{peer}, ClientURLs: []string{manifests.ClientURL(r.src)}}
	for _, h := range c.Spec.Hosts {
		other := in.Hosts[h.Name]
		if other == nil {
			continue
		}
		preflight(in, &host{cfg: h, facts: other}, refused)
		if other.DataDir.HasWAL && other.DataDir.ClusterID != 0 && dd.ClusterID != 0 && other.DataDir.ClusterID != dd.ClusterID {
			refused.add(h.Name, "its data directory holds a member of another cluster (%s, not %s): move it away, or `etcdadm reset %s`", etcdclient.FormatID(other.DataDir.ClusterID), etcdclient.FormatID(dd.ClusterID), h.Name)
		} else if other.RunsEtcd() && !r.formed {
			// Every member stops: each must be this cluster's.
			checkIdentity(in, h, other, dd.ClusterID, anyMember, false, refused)
		}
	}
	if r.formed {
		return
	}
	for _, st := range e.Status {
		if _, ok := c.Host(st.Name); !ok {
			refused.add("", "member %s (%s, %s) is not in the inventory but runs: the recovered cluster would leave it out; add its host to the inventory, or stop it", st.Name, st.ID, st.Endpoint)
		}
	}
}

// stages are the recovery's stages from where the hosts are.
func (r *recovery) stages(p *Plan) ([]Stage, error) {
	in, c := r.in, r.in.Cluster
	name := r.src.Name
	var stages []Stage
	view := r.in.Etcd
	if !r.formed {
		var marks []Op
		if !r.facts.HasPending(facts.PendingRecover) {
			marks = append(marks, ops.Mark{Marker: facts.PendingRecover, Why: "a recovery from this host's data starts: a cut run goes on from here"})
		}
		for _, h := range c.Spec.Hosts {
			if h.Name != name && !r.facts.HasPending(facts.PendingRejoin+h.Name) {
				marks = append(marks, ops.Mark{Marker: facts.PendingRejoin + h.Name, Why: h.Name + "'s member is dropped: it joins again, now or once it is back"})
			}
		}
		if len(marks) > 0 {
			stages = append(stages, Stage{Name: "record the recovery on " + name, Rollout: AllAtOnce,
				Why: "before anything changes, so that a cut run is finished by the next", Hosts: []HostOps{{Host: name, Ops: marks}}})
		}
		stop := Stage{Name: "stop every member", Rollout: AllAtOnce, Why: "no member of the old cluster may run next to the recovered one"}
		for _, h := range c.Spec.Hosts {
			if hf := in.Hosts[h.Name]; hf != nil && (hf.Manifest != nil || hf.RunsEtcd()) {
				op := in.Runtime.StopOp()
				op.Disruptive = true
				stop.Hosts = append(stop.Hosts, HostOps{Host: h.Name, Ops: []Op{op}})
			}
		}
		if len(stop.Hosts) > 0 {
			stages = append(stages, stop)
		}
		st, err := r.forceNewCluster()
		if err != nil {
			return nil, err
		}
		stages = append(stages, st)
		view = &facts.Cluster{Members: []etcdclient.Member{r.member}, LeaderID: r.member.ID,
			Status: map[uint64]etcdclient.MemberStatus{r.member.ID: {Name: name, MemberID: r.member.ID, Healthy: true}}}
	}
	restart, hp, err := r.restartWithoutFlag()
	if err != nil {
		return nil, err
	}
	p.Hosts = append(p.Hosts, hp)
	if restart != nil {
		stages = append(stages, *restart)
	}
	joins, hosts, err := r.joins(view)
	if err != nil {
		return nil, err
	}
	p.Hosts = append(p.Hosts, hosts...)
	stages = append(stages, joins...)
	for _, h := range c.Spec.Hosts {
		if h.Name != name && in.Hosts[h.Name] == nil {
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s cannot be reached: it is left out of the recovered cluster; once it is back, `etcdadm apply` moves its old data under %s and adds it again as a learner", h.Name, "/var/lib/etcdadm/backup"))
		}
	}
	stages = append(stages, Stage{Name: "finish the recovery", Rollout: AllAtOnce, Why: "every host that can be reached is back",
		Hosts: []HostOps{{Host: name, Ops: []Op{ops.Unmark{Marker: facts.PendingRecover}}}}})
	return stages, nil
}

// startsAs is how the kept member starts without the flag: as its manifest
// says when it says so (etcd reads it only on an empty data directory, so
// a later apply keeps it), else as the recovered cluster of itself.
func (r *recovery) startsAs() Member {
	if m := r.facts.Manifest; m != nil && m.Err == "" && m.Name == r.src.Name && m.InitialCluster != "" &&
		(m.InitialClusterState == manifests.StateNew || m.InitialClusterState == manifests.StateExisting) {
		return Member{InitialCluster: m.InitialCluster, State: m.InitialClusterState, Why: "kept from the member's manifest: etcd reads it only on an empty data directory"}
	}
	return Member{InitialCluster: etcdclient.InitialCluster([]etcdclient.Member{r.member}, r.src.Name, manifests.PeerURL(r.src)), State: manifests.StateExisting,
		Why: "the recovered cluster of this member; etcd reads its data directory, not these flags"}
}

// forceNewCluster starts the kept data alone with --force-new-cluster: the
// host's files brought to its plan as for any start, then its start file
// with the flag.
func (r *recovery) forceNewCluster() (Stage, error) {
	in, c, name := r.in, r.in.Cluster, r.src.Name
	m := r.startsAs()
	m.ForceNewCluster, m.Restart = true, in.restartStamp(false)+" (force-new-cluster)"
	m.Why = "the kept data starts as a cluster of this member alone"
	hf := stopped(in, r.facts)
	hp, err := HostFiles(c, in.Runtime, in.PKI, r.src, m, AllParts)
	if err != nil {
		return Stage{}, err
	}
	Compare(&hp, hf)
	h := &host{cfg: r.src, facts: hf, role: roleMember, plan: &hp}
	w, err := in.Runtime.Work(runtimeHost(in, h))
	if err != nil {
		return Stage{}, fmt.Errorf("plan for %s: %w", name, err)
	}
	ch, err := startChange(&hp, in.Runtime.StartPath(c))
	if err != nil {
		return Stage{}, err
	}
	again := m
	again.Restart = in.restartStamp(true) + " (force-new-cluster)"
	start, err := in.Runtime.StartOp(c, r.src, ch, again)
	if err != nil {
		return Stage{}, err
	}
	start.Why = "--force-new-cluster: the other members are removed from its data, which keeps its IDs and keys"
	steps := append(slices.Clone(w.Prepare), start)
	if r.facts.HasPending(facts.PendingEtcdRestart) {
		steps = append(steps, ops.Unmark{Marker: facts.PendingEtcdRestart})
	}
	return Stage{Name: "start " + name + " alone with --force-new-cluster", Rollout: AllAtOnce,
		Why:   "its data becomes a cluster of one member, with every key it holds",
		Hosts: []HostOps{{Host: name, Ops: steps}}, Wait: []string{name}}, nil
}

// restartWithoutFlag restarts the kept member without --force-new-cluster,
// which any later start would apply again and drop the members added since;
// nil when its start file has no flag (a cut run got past it). The host's
// plan is returned either way.
func (r *recovery) restartWithoutFlag() (*Stage, Host, error) {
	in, c, name := r.in, r.in.Cluster, r.src.Name
	m := r.startsAs()
	m.Restart = in.restartStamp(false) + " (recovered)"
	hp, err := HostFiles(c, in.Runtime, in.PKI, r.src, m, AllParts)
	if err != nil {
		return nil, Host{}, err
	}
	flagged := !r.formed
	if mf := r.facts.Manifest; r.formed && mf != nil && mf.Flags["force-new-cluster"] == "true" {
		flagged = true
	}
	if !flagged {
		// The member runs as the recovered cluster: its plan is apply's.
		m.Restart = ""
		if mf := r.facts.Manifest; mf != nil {
			m.Restart = mf.Restart
		}
		hp, err = HostFiles(c, in.Runtime, in.PKI, r.src, m, AllParts)
		if err == nil {
			Compare(&hp, r.facts)
		}
		return nil, hp, err
	}
	Compare(&hp, r.facts)
	ch, err := startChange(&hp, in.Runtime.StartPath(c))
	if err != nil {
		return nil, Host{}, err
	}
	if ch.Kind == Create || ch.Kind == Unchanged {
		// After the flagged start: the flagged file is what it replaces.
		w := *ch
		w.Kind = Update
		ch = &w
	}
	again := m
	again.Restart = in.restartStamp(true) + " (recovered)"
	restart, err := in.Runtime.StartOp(c, r.src, ch, again)
	if err != nil {
		return nil, Host{}, err
	}
	restart.Disruptive = true
	restart.Why = "without --force-new-cluster, which a later start would apply again"
	return &Stage{Name: "restart " + name + " without --force-new-cluster", Rollout: AllAtOnce,
		Why:   "the recovered cluster of one member restarts as any member does",
		Hosts: []HostOps{{Host: name, Ops: []Op{restart, ops.WaitMember{Member: name, NewProcess: true}}}},
		Wait:  []string{name}}, hp, nil
}

// startChange is the change of hp's start file (manifest or environment
// file), written whatever the host has.
func startChange(hp *Host, startPath string) (*Change, error) {
	for i, ch := range hp.Changes {
		if ch.Path == startPath {
			w := hp.Changes[i]
			if w.Kind != Update {
				w.Kind, w.OldSHA, w.OldMode = Create, "", ""
			}
			return &w, nil
		}
	}
	return nil, fmt.Errorf("no start file %s planned for %s", startPath, hp.Name)
}

// joins add every other host that can be reached, one at a time, to the
// recovered cluster of view: learners promoted once caught up, old data
// moved aside first. A voter of view is left as it is.
func (r *recovery) joins(view *facts.Cluster) ([]Stage, []Host, error) {
	in, c := r.in, r.in.Cluster
	jin := in
	jin.Etcd = view
	var voters []string
	for _, h := range c.Spec.Hosts {
		if m, ok := view.Member(h.Name, manifests.PeerURL(h)); ok && !m.Learner {
			voters = append(voters, h.Name)
		}
	}
	var stages []Stage
	var plans []Host
	var joined []etcdclient.Member
	for _, cfg := range c.Spec.Hosts {
		hf := in.Hosts[cfg.Name]
		if cfg.Name == r.src.Name || hf == nil || slices.Contains(voters, cfg.Name) {
			continue
		}
		if !r.formed {
			// The first stage stopped it.
			hf = stopped(in, hf)
		}
		peer := manifests.PeerURL(cfg)
		h := &host{cfg: cfg, facts: hf, role: roleJoin, rejoin: r.src.Name}
		h.member, h.listed = view.Member(cfg.Name, peer)
		m := Member{InitialCluster: etcdclient.InitialCluster(append(slices.Clone(view.Members), joined...), cfg.Name, peer), State: manifests.StateExisting,
			Why: "joins the recovered cluster as a learner"}
		ownData := h.listed && hf.DataDir.MemberID == h.member.ID
		if mf := hf.Manifest; ownData && mf != nil && mf.Err == "" && mf.InitialClusterState == manifests.StateExisting && mf.InitialCluster != "" {
			m = Member{InitialCluster: mf.InitialCluster, State: mf.InitialClusterState, Restart: mf.Restart, Why: "kept from its manifest: it joined the recovered cluster"}
		}
		if !ownData {
			h.clean = keptForGood(in, cleanOps(in, hf, false), r.src.Name)
			h.facts = withoutMember(in, hf)
		}
		if !h.listed {
			joined = append(joined, etcdclient.Member{Name: cfg.Name, PeerURLs: []string{peer}})
		}
		hp, err := HostFiles(c, in.Runtime, in.PKI, cfg, m, AllParts)
		if err != nil {
			return nil, nil, err
		}
		Compare(&hp, h.facts)
		h.plan = &hp
		if h.work, err = in.Runtime.Work(runtimeHost(jin, h)); err != nil {
			return nil, nil, fmt.Errorf("plan for %s: %w", cfg.Name, err)
		}
		stages = append(stages, join(jin, h, voters, len(stages)))
		plans = append(plans, hp)
		voters = append(voters, cfg.Name)
	}
	return stages, plans, nil
}
