package plan

import (
	"fmt"
	"slices"
	"strings"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/runtime"
)

// prepareDirs is what every runtime's work starts with: the images the
// host lacks, the directories it lacks, and the modes and owners of those
// it has set right.
func prepareDirs(h *host) []Op {
	hp, hf := h.plan, h.facts
	steps := slices.Clone(h.imports)
	for _, d := range hp.Dirs {
		if st, ok := hf.Files[d.Path]; !ok || !st.Dir {
			steps = append(steps, ops.Mkdir{Path: d.Path, Mode: d.Mode})
		}
	}
	for _, dc := range hp.DirChanges {
		steps = append(steps, ops.Run{Path: dc.Path, Command: dc.Command(), Why: dc.What()})
	}
	return steps
}

// bringUp starts members that have no data yet, all at once: they need each
// other for a quorum. Every host gets all its other files before any gets
// its manifest, so that a cut run leaves no member started alone that a
// re-run could not finish.
func bringUp(in Input, hosts []*host, name, why string) []Stage {
	prepare := Stage{Name: name + ": prepare the hosts", Rollout: AllAtOnce, Why: why}
	start := Stage{Name: name + ": start the members", Rollout: AllAtOnce}
	for _, h := range hosts {
		w := h.work
		if len(w.Prepare) > 0 {
			prepare.Hosts = append(prepare.Hosts, HostOps{Host: h.cfg.Name, Ops: w.Prepare})
		}
		if len(w.Start) > 0 {
			start.Hosts = append(start.Hosts, HostOps{Host: h.cfg.Name, Ops: w.Start})
		}
	}
	for _, h := range hosts {
		start.Wait = append(start.Wait, h.cfg.Name)
	}
	var out []Stage
	if len(prepare.Hosts) > 0 {
		out = append(out, prepare)
	}
	if len(start.Hosts) > 0 || len(prepare.Hosts) > 0 {
		out = append(out, start)
	}
	return out
}

// together makes all-at-once stages one: each host's operations in the
// stages' order, the last stage's wait.
func together(stages []Stage, name string) Stage {
	st := Stage{Name: name, Rollout: AllAtOnce}
	if len(stages) > 0 {
		st.Why, st.Wait = stages[0].Why, stages[len(stages)-1].Wait
	}
	at := map[string]int{}
	for _, s := range stages {
		for _, ho := range s.Hosts {
			i, ok := at[ho.Host]
			if !ok {
				i, at[ho.Host] = len(st.Hosts), len(st.Hosts)
				st.Hosts = append(st.Hosts, HostOps{Host: ho.Host})
			}
			st.Hosts[i].Ops = append(st.Hosts[i].Ops, ho.Ops...)
		}
	}
	return st
}

// withoutQuorum marks the stage of stages that starts the members as
// planned for a cluster without quorum, for the executor to check again.
func withoutQuorum(stages []Stage, why string) []Stage {
	if n := len(stages); n > 0 {
		stages[n-1].QuorumLost = why
	}
	return stages
}

// converge plans the changes to a cluster that exists: members brought to
// their files one at a time behind health gates (leader last), or all at
// once when the loss of quorum is confirmed, with nothing left to protect;
// hosts named in the bring-up but never started, started together; new
// hosts added one at a time as learners and promoted. Too few healthy
// voters without a confirmed loss (slow members, an alarm) is no licence
// to restart them all: rolling refuses what could cost the quorum they
// may still have.
func converge(in Input, hosts []*host, up *upgrade, refused *refusals) ([]Stage, []string) {
	e := in.Etcd
	var warnings []string
	var members, boots, joins []*host
	for _, h := range hosts {
		switch h.role {
		case roleMember:
			members = append(members, h)
		case roleBootstrap:
			boots = append(boots, h)
		case roleJoin:
			joins = append(joins, h)
		}
	}
	anyRuns := slices.ContainsFunc(hosts, (*host).runs)
	blind := !e.Known() && anyRuns
	expired := expiredMembers(in, members)
	if blind && len(expired) > 0 && len(expired) == countRunning(members) {
		// Members whose certificates expired cannot reach each other, nor
		// be reached: there is no quorum to protect. etcd reads its leaves
		// at every handshake, so members that got new ones may elect a
		// leader before they restart: the members are asked whether they
		// still have none before any certificate is written, and each
		// restarts right after its files, in one stage.
		why := fmt.Sprintf("the certificates of %s expired, so no member can reach another", strings.Join(expired, ", "))
		st := together(bringUp(in, append(members, boots...), "recovery", why+": every member gets its new certificates and restarts at once"),
			"recovery: new certificates and a restart on every member")
		return withoutQuorum([]Stage{st}, why), warnings
	}
	if !e.HasQuorum() && !blind && e.QuorumLost {
		// Nothing to protect: a bring-up to finish, or a cluster to recover.
		if len(joins) > 0 {
			for _, h := range joins {
				refused.add(h.cfg.Name, "cannot join while the cluster has no quorum: bring the existing members back first")
			}
		}
		why := "the cluster has no quorum: every member is brought back at once"
		name := "recovery"
		if len(boots) > 0 {
			why, name = "the bring-up of this cluster did not finish: the members named in its --initial-cluster start together", "bring-up (continued)"
		}
		return withoutQuorum(bringUp(in, append(members, boots...), name, why), e.QuorumWhy), warnings
	}

	var stages []Stage
	if len(boots) > 0 {
		stages = append(stages, bringUp(in, boots, "bring-up (continued)", "members named in the cluster's --initial-cluster that never started")...)
	}
	if st, ws := rolling(in, members, up, refused, blind); len(st.Hosts) > 0 {
		stages = append(stages, st)
		warnings = append(warnings, ws...)
	} else {
		warnings = append(warnings, ws...)
	}
	voters := healthyVoterNames(in, hosts)
	for i, h := range joins {
		if blind {
			refused.add(h.cfg.Name, "cannot be added: no member answers (%s)", e.ListError)
			continue
		}
		stages = append(stages, join(in, h, voters, i))
		voters = append(voters, h.cfg.Name)
	}
	return stages, warnings
}

// rolling changes members one at a time: the unhealthy ones first (they are
// down already), then the followers, then the leader. A change that
// restarts a healthy member is refused when the others could not keep
// quorum without it.
func rolling(in Input, members []*host, up *upgrade, refused *refusals, blind bool) (Stage, []string) {
	e := in.Etcd
	st := Stage{Name: "update members", Rollout: OneAtATime, Why: "a running cluster: one member at a time, each healthy and caught up before the next, the leader last"}
	if up != nil {
		st.Name = "upgrade " + up.describe()
		st.Why = "one member at a time, the leader last: each must come back reporting the new version, healthy and caught up, before the next; a member that does not is put back on its old manifest and the upgrade stops"
		if in.Cluster.Systemd() {
			st.Why = strings.Replace(st.Why, "its old manifest", "its old binaries", 1)
		}
	}
	var warnings []string
	type item struct {
		h    *host
		w    runtime.Work
		rank int
	}
	var items []item
	for _, h := range members {
		w := h.work
		healthy := h.listed && e.Healthy(h.member.ID)
		if w.Empty() {
			if !h.runs() && !healthy {
				warnings = append(warnings, fmt.Sprintf("%s: its etcd is not running although its files are as planned; look at its kubelet and etcd logs", h.cfg.Name))
			}
			continue
		}
		rank := 1
		switch {
		case !healthy:
			rank = 0
		case h.member.ID == e.Leader():
			rank = 2
		}
		items = append(items, item{h, w, rank})
	}
	slices.SortStableFunc(items, func(a, b item) int { return a.rank - b.rank })
	voters := len(e.Voters())
	q := facts.Quorum(voters)
	healthyNow := e.HealthyVoters()
	st.Quorum = q
	expected := healthyVoterNames(in, members)
	// Fewer healthy voters than a quorum, yet its loss is not confirmed.
	doubt := !blind && !e.HasQuorum()
	// Voters a cut run was restarting come back, or are repaired, before
	// any healthy member restarts (they are not healthy, so they come
	// first): they do not count against quorum, and the executor asks
	// afresh before each host.
	coming := 0
	for _, it := range items {
		if cutRestart(in, it.h) && it.h.listed && !it.h.member.Learner {
			coming++
		}
	}
	for _, it := range items {
		name := it.h.cfg.Name
		if it.w.Disruptive() {
			switch {
			case blind:
				refused.add(name, "restarting its member (%s) needs a look at quorum first, but no member answers: %s", strings.Join(it.w.Why, ", "), e.ListError)
				continue
			case doubt:
				refused.add(name, "restarting its member (%s) could cost the cluster its quorum: %d of %d voting members are healthy, below the quorum of %d, but the loss of quorum is not confirmed (%s)%s; wait until `etcdadm status` shows them healthy, or bring them back, then apply again",
					strings.Join(it.w.Why, ", "), healthyNow, voters, q, quorumDoubt(e), unhealthyList(in))
				continue
			case it.h.listed && !it.h.member.Learner && e.Healthy(it.h.member.ID) && healthyNow+coming-1 < q:
				refused.add(name, "restarting its member (%s) would leave %d of %d voting members healthy, below the quorum of %d%s; bring them back first, then apply again",
					strings.Join(it.w.Why, ", "), healthyNow+coming-1, voters, q, unhealthyList(in))
				continue
			}
		}
		// The pending marker goes once the member is back, not before.
		start, unmarks := splitUnmarks(it.w.Start)
		steps := append(slices.Clone(it.w.Prepare), start...)
		if cutRestart(in, it.h) && mayComeBack(in, it.h) {
			steps = append([]Op{ops.AwaitRestart{Member: name, Marker: facts.PendingEtcdRestart, Why: "a run was cut while it restarted this member, which may be coming back"}}, steps...)
		}
		// A member that ran has the health gate to run and answer again;
		// past it, it is put back on what it ran before.
		rh := runtimeHost(in, it.h)
		for i := range steps {
			if r, ok := steps[i].(ops.RestartEtcd); ok && r.Disruptive {
				r.Rollback, r.RollbackRetry = in.Runtime.Rollback(rh, false), in.Runtime.Rollback(rh, true)
				steps[i] = r
			}
		}
		wait := ops.WaitMember{Member: name, NewProcess: it.w.Restarts, Gated: it.w.Restarts && it.h.runs()}
		if up != nil && up.changesVersion(name) && up.to != nil {
			wait.Version = up.to.String()
		}
		if len(it.w.Start) > 0 || it.w.Kubelet {
			steps = append(steps, wait)
		}
		steps = append(steps, unmarks...)
		if !slices.Contains(expected, name) {
			expected = append(expected, name)
		}
		steps = append(steps, ops.WaitCluster{Members: slices.Clone(expected)})
		st.Hosts = append(st.Hosts, HostOps{Host: name, Ops: steps})
	}
	return st, warnings
}

// splitUnmarks takes the clearing of the pending restart out of a
// member's start operations, to run once the member is back.
func splitUnmarks(start []Op) (rest, unmarks []Op) {
	for _, op := range start {
		if u, ok := op.(ops.Unmark); ok && u.Marker == facts.PendingEtcdRestart {
			unmarks = append(unmarks, op)
		} else {
			rest = append(rest, op)
		}
	}
	return rest, unmarks
}

// cutRestart reports whether a run that was cut was restarting h's member,
// which is not healthy now: its pending marker is there.
func cutRestart(in Input, h *host) bool {
	return h.facts.HasPending(facts.PendingEtcdRestart) && !(h.listed && in.Etcd.Healthy(h.member.ID))
}

// mayComeBack reports whether something would start h's member without
// etcdadm: its start file is there and its unit (or kubelet) not stopped.
func mayComeBack(in Input, h *host) bool {
	hf := h.facts
	stopped := func(state string) bool { return state == "inactive" || state == "failed" }
	if _, there := hf.Files[in.Runtime.StartPath(in.Cluster)]; !there || stopped(hf.EtcdActive) {
		return false
	}
	return in.Runtime.Unit() != "" || !stopped(hf.KubeletActive)
}

// quorumDoubt says why too few healthy voters is not a lost quorum.
func quorumDoubt(e *facts.Cluster) string {
	var why []string
	if e.QuorumWhy != "" {
		why = append(why, e.QuorumWhy)
	} else if e.LeaderSeen() {
		why = append(why, "a member names a leader")
	}
	if slow := e.Slow(); len(slow) > 0 {
		why = append(why, "slow to answer: "+strings.Join(slow, ", "))
	}
	for _, a := range e.Alarms {
		why = append(why, "alarm "+a.Type+describeRaiser(a))
	}
	return strings.Join(why, "; ")
}

// join adds one host, after earlier joins of the same plan: its files, the
// learner, the manifest, the catch-up and the promotion, then a wait for
// every member.
func join(in Input, h *host, voters []string, earlier int) Stage {
	name, peer := h.cfg.Name, manifests.PeerURL(h.cfg)
	w := h.work
	st := Stage{Name: "add member " + name, Rollout: OneAtATime, Quorum: facts.Quorum(len(in.Etcd.Voters()) + earlier),
		Why: "a new member joins as a learner, which does not count towards quorum until it caught up and is promoted"}
	steps := append(slices.Clone(h.clean), w.Prepare...)
	if !h.listed {
		steps = append(steps, ops.AddLearner{Member: name, PeerURL: peer})
	} else {
		st.Name = "finish adding member " + name
	}
	steps = append(steps, w.Start...)
	steps = append(steps, ops.WaitMember{Member: name, NewProcess: len(w.Start) > 0})
	if !h.listed || h.member.Learner {
		steps = append(steps, ops.Promote{Member: name, PeerURL: peer})
	}
	steps = append(steps, ops.WaitCluster{Members: append(slices.Clone(voters), name)})
	st.Hosts = []HostOps{{Host: name, Ops: steps}}
	if h.rejoin != "" {
		st.Hosts = append(st.Hosts, HostOps{Host: h.rejoin, Ops: []Op{ops.Unmark{Marker: facts.PendingRejoin + name, Why: name + " is back"}}})
	}
	return st
}

// healthyVoterNames are the inventory hosts whose members are healthy voters.
func healthyVoterNames(in Input, hosts []*host) []string {
	var out []string
	for _, h := range hosts {
		if h.listed && !h.member.Learner && in.Etcd.Healthy(h.member.ID) {
			out = append(out, h.cfg.Name)
		}
	}
	return out
}

// unhealthyList names the voting members that are not healthy, and why.
func unhealthyList(in Input) string {
	var bad []string
	for _, m := range in.Etcd.Voters() {
		if in.Etcd.Healthy(m.ID) {
			continue
		}
		name := m.Name
		if name == "" {
			name = m.HexID()
		}
		why := "not answering"
		if st, ok := in.Etcd.Status[m.ID]; ok && st.Error != "" {
			why = st.Error
		} else if len(m.ClientURLs) > 0 {
			if st, ok := in.Etcd.Unanswered[m.ClientURLs[0]]; ok && st.Error != "" {
				why = st.Error
			}
		}
		bad = append(bad, name+" ("+why+")")
	}
	if len(bad) == 0 {
		return ""
	}
	return "; not healthy: " + strings.Join(bad, ", ")
}

// unknownMembers warns about members the inventory does not name.
func unknownMembers(in Input) []string {
	var out []string
	for _, m := range in.Etcd.Members {
		known := false
		for _, h := range in.Cluster.Spec.Hosts {
			if m.HasPeerURL(manifests.PeerURL(h)) || (m.Name != "" && m.Name == h.Name) {
				known = true
			}
		}
		if !known {
			name := m.Name
			if name == "" {
				name = "(not started)"
			}
			out = append(out, fmt.Sprintf("etcd member %s (%s, %v) is not in the inventory: it is left alone and counts towards quorum; `etcdadm member remove %s` removes it",
				name, m.HexID(), m.PeerURLs, orID(m)))
		}
	}
	return out
}

func orID(m etcdclient.Member) string {
	if m.Name != "" {
		return m.Name
	}
	return m.HexID()
}

// expiredMembers names the running members whose host holds an expired
// etcd CA, server or peer certificate.
func expiredMembers(in Input, members []*host) []string {
	now := in.Now
	var out []string
	for _, h := range members {
		if !h.runs() {
			continue
		}
		for _, p := range runtime.EtcdFiles() {
			if !strings.HasSuffix(p, ".crt") {
				continue
			}
			if c, err := certs.ParseCert(h.facts.Files[p].Data); err == nil && now.After(c.NotAfter) {
				out = append(out, h.cfg.Name)
				break
			}
		}
	}
	return out
}

func countRunning(hosts []*host) int {
	n := 0
	for _, h := range hosts {
		if h.runs() {
			n++
		}
	}
	return n
}
