package plan

import (
	"fmt"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

// MoveFrom is where a member moves from: its old host, which the plan's
// stages call Host, at Address.
type MoveFrom struct {
	Host    string
	Address string
	// Facts are the old host's; nil when it could not be reached, and Err
	// says why.
	Facts *facts.Host
	Err   string
}

// OldHost is the name a move's stages give the old host of member name.
func OldHost(name, address string) string { return fmt.Sprintf("%s (old %s)", name, address) }

// MoveStaging is where the new host receives a moving member's data before
// it takes the data directory's place: next to it, on its file system.
func MoveStaging(dataDir string) string {
	return path.Join(path.Dir(dataDir), "."+path.Base(dataDir)+".etcdadm-move")
}

// MoveSource finds where member name moves from: the address of its peer
// URL in the member list, while that is not the inventory's; after a move
// cut once the URL changed, the address its new host recorded. An empty
// Address means there is nothing to move.
func MoveSource(in Input, name string) (MoveFrom, error) {
	if err := in.check(); err != nil {
		return MoveFrom{}, err
	}
	m, h, err := moving(in, name)
	if err != nil {
		return MoveFrom{}, err
	}
	peer := manifests.PeerURL(h)
	if m.HasPeerURL(peer) {
		if hf := in.Hosts[name]; hf != nil {
			for _, p := range hf.Pending {
				if a, ok := strings.CutPrefix(p, facts.PendingMoveFrom); ok {
					return MoveFrom{Host: OldHost(name, a), Address: a}, nil
				}
			}
		}
		return MoveFrom{}, nil
	}
	var refused refusals
	u, err := url.Parse(m.PeerURLs[0])
	if err != nil || u.Hostname() == "" {
		refused.add(name, "its peer URL %q names no address to move from", m.PeerURLs[0])
		return MoveFrom{}, refused.err("member move")
	}
	return MoveFrom{Host: OldHost(name, u.Hostname()), Address: u.Hostname()}, nil
}

// moving is member name and its inventory host, or the refusal.
func moving(in Input, name string) (etcdclient.Member, config.Host, error) {
	var refused refusals
	h, ok := in.Cluster.Host(name)
	e := in.Etcd
	switch {
	case !ok:
		refused.add(name, "is not a host of the inventory: put it there with its new address")
	case !e.Known() || e.Serializable:
		refused.add("", "no quorum to move a member with (%s): bring the members back first", quorumWhy(Input{Etcd: e}))
	}
	if err := refused.err("member move"); err != nil {
		return etcdclient.Member{}, h, err
	}
	for _, m := range e.Members {
		if m.Name == name || m.HasPeerURL(manifests.PeerURL(h)) {
			if len(m.PeerURLs) == 0 {
				break
			}
			return m, h, nil
		}
	}
	refused.add(name, "is not a started member of the cluster: `etcdadm apply` adds it")
	return etcdclient.Member{}, h, refused.err("member move")
}

// Move plans `etcdadm member move NAME`: the member keeps its ID and its
// data, and moves to the address the inventory gives it. Its etcd stops
// on the old host (its manifest kept under the backup directory); its data
// directory streams to the new host through this machine; its peer URL
// changes through the other members, which keep quorum; it starts on the
// new host with certificates for the new address; the old host's etcd
// files, its data included, go under its backup directory. Every step is
// read from the hosts, so a cut move goes on when run again.
func Move(in Input, name string, from MoveFrom) (*Plan, error) {
	if err := in.check(); err != nil {
		return nil, err
	}
	if err := unfinishedRestore(in, "member move", name); err != nil {
		return nil, err
	}
	p := newPlan(in)
	if from.Address == "" {
		p.Warnings = append(p.Warnings, name+" is at the address the inventory gives it: nothing to move")
		return p, nil
	}
	m, cfg, err := moving(in, name)
	if err != nil {
		return nil, err
	}
	c, e := in.Cluster, in.Etcd
	peer := manifests.PeerURL(cfg)
	updated := m.HasPeerURL(peer)
	running := updated && e.Healthy(m.ID)
	hf := in.Hosts[name]
	old := from.Facts
	var refused refusals
	switch {
	case from.Address == cfg.Address:
		refused.add(name, "the inventory still puts it at %s, where the cluster has it: write its new address in spec.hosts first", cfg.Address)
	case m.Learner:
		refused.add(name, "is a learner: let `etcdadm apply` finish adding it first")
	case hf == nil:
		refused.add(name, "its new host at %s cannot be reached: the member is started there", cfg.Address)
	case old == nil && !running:
		refused.add(name, "its old host at %s cannot be reached over SSH (%s), so its data cannot be moved: replace the member with `etcdadm member replace %s` instead (a new member ID, its data synced from the others)", from.Address, from.Err, name)
	}
	if err := refused.err("member move"); err != nil {
		return nil, err
	}
	voters := e.Voters()
	others := 0
	for _, v := range voters {
		if v.ID != m.ID && e.Healthy(v.ID) {
			others++
		}
	}
	if q := facts.Quorum(len(voters)); others < q {
		refused.add(name, "moving it stops it for a while, which would leave %d of %d voting members healthy, below the quorum of %d%s; bring them back first", others, len(voters), q, unhealthyList(in))
	}
	dd := hf.DataDir
	copied := dd.HasWAL && dd.MemberID == m.ID
	h := &host{cfg: cfg, facts: hf, role: roleMember, member: m, listed: true}
	preflight(in, h, &refused)
	switch {
	case copied:
	case dd.HasWAL:
		refused.add(name, "the data directory %s of its new host holds another member (%s): move it away first", c.Spec.Etcd.DataDir, idOrUnknown(dd.MemberID))
	case !dd.Empty():
		refused.add(name, "the data directory %s of its new host is not empty and holds no etcd member: move it away first", c.Spec.Etcd.DataDir)
	case hf.RunsEtcd():
		refused.add(name, "an etcd already runs on its new host (pid %d): stop it first", hf.Etcd[0].PID)
	case old == nil:
		refused.add(name, "its data is not on its new host yet and its old host at %s cannot be reached over SSH (%s): replace the member with `etcdadm member replace %s` instead", from.Address, from.Err, name)
	case !old.DataDir.HasWAL || old.DataDir.MemberID != m.ID:
		refused.add(from.Host, "its data directory %s holds no data of member %s (%s): there is nothing to move; replace the member with `etcdadm member replace %s` instead", c.Spec.Etcd.DataDir, name, m.HexID(), name)
	}
	if old != nil && old.UID != 0 {
		refused.add(from.Host, "commands run as uid %d, not root: log in as root or as a user with passwordless sudo", old.UID)
	}
	if old != nil && old.RunsEtcd() {
		// It stops there: it must be the member that moves.
		var rs refusals
		checkIdentity(in, config.Host{Name: name, Address: from.Address}, old, e.ClusterID, m.ID, false, &rs)
		for _, r := range rs {
			refused.add(from.Host, "%s", r.Reason)
		}
	}
	p.Warnings = append(p.Warnings, planImages(in, []*host{h}, &refused)...)
	if err := refused.err("member move"); err != nil {
		return nil, err
	}
	var stages []Stage
	marker := facts.PendingMoveFrom + from.Address
	if !hf.HasPending(marker) {
		stages = append(stages, Stage{Name: "record the move on " + name, Rollout: AllAtOnce, Why: "a cut run finds the old host again from it",
			Hosts: []HostOps{{Host: name, Ops: []Op{ops.Mark{Marker: marker, Why: name + " moves from " + from.Address}}}}})
	}
	if old != nil && (old.Manifest != nil || old.RunsEtcd()) {
		var steps []Op
		if e.Leader() == m.ID && e.Healthy(m.ID) {
			ml := ops.MoveLeader{Member: name, MemberID: m.HexID(), Why: "a stopped leader would cost an election"}
			if !updated && len(m.ClientURLs) > 0 {
				ml.ClientURL = m.ClientURLs[0]
			}
			steps = append(steps, ml)
		}
		stop := in.Runtime.StopOp()
		stop.Disruptive = true
		steps = append(steps, stop)
		stages = append(stages, Stage{Name: "stop " + name + " on its old host", Rollout: OneAtATime, Quorum: facts.Quorum(len(voters)),
			Why: "the other members keep quorum without it", Hosts: []HostOps{{Host: from.Host, Ops: steps}}})
	}
	if !copied {
		staging := MoveStaging(c.Spec.Etcd.DataDir)
		stages = append(stages, Stage{Name: "copy " + name + "'s data to its new host", Rollout: AllAtOnce,
			Why: "the member keeps its ID and its data; the stream is checked on both ends",
			Hosts: []HostOps{{Host: name, Ops: []Op{
				ops.CopyData{From: from.Host, Path: c.Spec.Etcd.DataDir, Staging: staging},
				ops.SwapData{Path: c.Spec.Etcd.DataDir, Source: staging, Why: "what the new host had there is kept under the backup directory"},
			}}}})
		h.facts = withData(hf, old.DataDir)
	}
	if !updated {
		stages = append(stages, Stage{Name: "update " + name + "'s peer URL", Rollout: AllAtOnce,
			Why:   "its peers reach it at its new address; nothing else of the member changes",
			Hosts: []HostOps{{Host: name, Ops: []Op{ops.UpdatePeer{Member: name, MemberID: m.HexID(), PeerURL: peer}}}}})
	}
	start, hp, err := moveStart(in, h, peer)
	if err != nil {
		return nil, err
	}
	p.Hosts = append(p.Hosts, hp)
	if start != nil {
		stages = append(stages, *start)
	}
	if old != nil {
		if steps := cleanOps(in, stopped(in, old), true); len(steps) > 0 {
			stages = append(stages, Stage{Name: "clean " + name + "'s old host", Rollout: AllAtOnce,
				Why: "its etcd files, and the data it had, go under its backup directory", Hosts: []HostOps{{Host: from.Host, Ops: steps}}})
		}
	} else {
		p.Warnings = append(p.Warnings, fmt.Sprintf("%s's old host at %s cannot be reached (%s): its files are left there; stop etcd there before it ever starts again", name, from.Address, from.Err))
	}
	stages = append(stages, Stage{Name: "finish the move", Rollout: AllAtOnce,
		Hosts: []HostOps{{Host: name, Ops: []Op{ops.Unmark{Marker: marker}}}}})
	p.Stages = stages
	oldURL := manifests.ClientURL(config.Host{Name: name, Address: from.Address})
	if err := aroundMembership(in, p, c.Spec.Hosts, goneURLs(c.Spec.Hosts, append(slices.Clone(m.ClientURLs), oldURL)...)); err != nil {
		return nil, err
	}
	return p, nil
}

// withData is the new host once the member's data is there.
func withData(hf *facts.Host, dd facts.DataDir) *facts.Host {
	out := *hf
	out.DataDir = dd
	return &out
}

// moveStart brings the new host to its plan and starts the member there,
// then waits for it and every voter; nil when it runs as planned already.
func moveStart(in Input, h *host, peer string) (*Stage, Host, error) {
	c, e, name := in.Cluster, in.Etcd, h.cfg.Name
	members := make([]etcdclient.Member, 0, len(e.Members))
	for _, m := range e.Members {
		if m.ID == h.member.ID {
			m.PeerURLs = []string{peer}
		}
		members = append(members, m)
	}
	m := Member{InitialCluster: etcdclient.InitialCluster(members, name, peer), State: manifests.StateExisting,
		Why: "moved with its data: etcd reads its data directory, not these flags"}
	if mf := h.facts.Manifest; mf != nil && mf.Err == "" && mf.Name == name && mf.InitialClusterState == manifests.StateExisting && mf.InitialCluster != "" {
		m = Member{InitialCluster: mf.InitialCluster, State: mf.InitialClusterState, Restart: mf.Restart, Why: "kept from its manifest"}
	}
	hp, err := HostFiles(c, in.Runtime, in.PKI, h.cfg, m, AllParts)
	if err != nil {
		return nil, Host{}, err
	}
	Compare(&hp, h.facts)
	h.plan = &hp
	if h.work, err = in.Runtime.Work(runtimeHost(in, h)); err != nil {
		return nil, Host{}, fmt.Errorf("plan for %s: %w", name, err)
	}
	w := h.work
	if w.Empty() && h.runs() {
		return nil, hp, nil
	}
	steps := append(append([]Op{}, w.Prepare...), w.Start...)
	steps = append(steps, ops.WaitMember{Member: name, NewProcess: len(w.Start) > 0})
	var voters []string
	for _, v := range e.Voters() {
		if v.ID == h.member.ID || e.Healthy(v.ID) {
			if hc, ok := hostOf(c, v); ok {
				voters = append(voters, hc)
			}
		}
	}
	steps = append(steps, ops.WaitCluster{Members: voters})
	return &Stage{Name: "start " + name + " on its new host", Rollout: OneAtATime,
		Why:   "with certificates for its new address, on the data it had",
		Hosts: []HostOps{{Host: name, Ops: steps}}}, hp, nil
}

// hostOf is the inventory host of member m.
func hostOf(c *config.Cluster, m etcdclient.Member) (string, bool) {
	for _, h := range c.Spec.Hosts {
		if m.Name == h.Name || m.HasPeerURL(manifests.PeerURL(h)) {
			return h.Name, true
		}
	}
	return "", false
}
