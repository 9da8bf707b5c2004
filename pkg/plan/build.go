package plan

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/cores"
	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/images"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/runtime"
	"github.com/etcdadm-io/etcdadm/pkg/snapshot"
)

// Input is everything a plan is made from, and nothing else.
type Input struct {
	Cluster *config.Cluster
	// PKI is the operator's PKI as certs.Compute worked it out.
	PKI *certs.PKI
	// Hosts are the facts of the inventory's hosts, by name.
	Hosts map[string]*facts.Host
	// Etcd is what etcd says; nil when it was not asked.
	Etcd *facts.Cluster
	// Runtime runs the members: the inventory's, chosen by the caller.
	Runtime runtime.Runtime
	// Now stamps the restarts the plan makes.
	Now time.Time
	// Images are the image archives a host's missing images are imported
	// from; nil when none were given.
	Images *images.Set
	// Platform is the hosts' os/architecture, which an archive must hold
	// the images for; this machine's when empty.
	Platform string
	// Restore is this machine's record of a restore not finished yet; nil
	// for none.
	Restore *snapshot.Record
}

// check refuses an Input the plan cannot be made from.
func (in Input) check() error {
	switch {
	case in.Cluster == nil:
		return fmt.Errorf("plan: no inventory")
	case in.Runtime == nil:
		return fmt.Errorf("plan: no runtime for the members")
	case in.Now.IsZero():
		return fmt.Errorf("plan: no time to stamp restarts with")
	}
	return nil
}

func (in Input) restartStamp(retry bool) string { return runtime.RestartStamp(in.Now, retry) }

// Commands run on hosts.
const (
	CmdDaemonReload = ops.CmdDaemonReload
	CmdRestartKube  = ops.CmdRestartKube
	CmdStartKube    = ops.CmdStartKube
	CmdStopKube     = ops.CmdStopKube
)

// role is what a host is to its cluster.
type role int

const (
	// roleBootstrap: part of a cluster being brought up; starts as "new".
	roleBootstrap role = iota
	// roleMember: a member with its data, running or to be repaired.
	roleMember
	// roleJoin: not a voting member yet; added as a learner, then promoted.
	roleJoin
)

// host is the planner's view of one inventory host.
type host struct {
	cfg    config.Host
	facts  *facts.Host
	role   role
	member etcdclient.Member
	listed bool
	plan   *Host
	// imports bring the images the host lacks, before anything starts.
	imports []Op
	// work is what its runtime does to bring it to its plan.
	work runtime.Work
	// clean stops an old member's etcd and moves its data aside before
	// the host joins (a host a recovery dropped, back with its old data).
	clean []Op
	// rejoin names the host that records this one's rejoin: the record is
	// cleared once it has joined.
	rejoin string
}

func (h *host) runs() bool { return h.facts.RunsEtcd() }

// runtimeHost is what the runtime plans host h from.
func runtimeHost(in Input, h *host) *runtime.Host {
	rh := &runtime.Host{Cluster: in.Cluster, Config: h.cfg, Facts: h.facts, Now: in.Now, Platform: in.platform()}
	if h.plan != nil {
		rh.Member, rh.Changes, rh.Prepare = h.plan.Member, h.plan.Changes, prepareDirs(h)
	}
	if st, ok := in.Etcd.Status[h.member.ID]; ok && h.listed && in.Etcd != nil {
		rh.Status = &st
	}
	return rh
}

// buildMembers is Build for the etcd hosts.
func buildMembers(in Input) (*Plan, error) {
	c := in.Cluster
	if in.Etcd == nil {
		in.Etcd = &facts.Cluster{}
	}
	p := &Plan{Cluster: c.Metadata.Name, Topology: c.Spec.Topology}
	var refused refusals
	checkPKI(in, &refused)
	checkRecovery(in, &refused)
	checkCorrupt(in, &refused)
	checkRestore(in, &refused, "")
	hosts := make([]*host, 0, len(c.Spec.Hosts))
	for _, ch := range c.Spec.Hosts {
		hf := in.Hosts[ch.Name]
		if hf == nil {
			return nil, fmt.Errorf("no facts for host %s", ch.Name)
		}
		hosts = append(hosts, &host{cfg: ch, facts: hf})
	}
	checkBackup(in, hosts, &refused)
	formed := classify(in, hosts, &refused)
	p.Warnings = append(p.Warnings, planImages(in, hosts, &refused)...)
	p.Warnings = append(p.Warnings, unknownMembers(in)...)
	early := len(refused) > 0
	// How each member starts is decided host after host (a host that joins
	// counts for the next); the files that follow, the part of a plan that
	// grows with the hosts, are rendered on every core.
	members := make([]Member, len(hosts))
	var joined []etcdclient.Member
	for i, h := range hosts {
		members[i] = Bootstrap(c)
		if !early {
			members[i] = memberFor(in, hosts, h, formed, &joined)
		}
	}
	p.Hosts = make([]Host, len(hosts))
	errs := make([]error, len(hosts))
	cores.Each(len(hosts), func(i int) { errs[i] = renderHost(in, hosts[i], members[i], &p.Hosts[i]) })
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	// The plan's hosts are copies; keep h.plan pointing at them.
	for i, h := range hosts {
		h.plan = &p.Hosts[i]
		if !early {
			var err error
			if h.work, err = in.Runtime.Work(runtimeHost(in, h)); err != nil {
				return nil, fmt.Errorf("plan for %s: %w", h.cfg.Name, err)
			}
			h.work.Prepare = append(h.work.Prepare, backupOps(c, h)...)
		}
	}
	if early {
		// The hosts' files are there to be shown; there are no stages.
		p.Refused = true
		return p, refused.err("apply")
	}
	if !formed {
		p.Stages = bringUp(in, hosts, "bring-up", "a new cluster: no host holds etcd data and no member answers")
		return p, nil
	}
	up := planUpgrade(in, hosts, &refused)
	stages, warnings := converge(in, hosts, up, &refused)
	if up != nil && !(&Plan{Stages: stages}).Empty() {
		stages = append([]Stage{snapshotStage(in, up)}, stages...)
	}
	p.Stages = stages
	p.Warnings = append(p.Warnings, warnings...)
	if err := refused.err("apply"); err != nil {
		p.Stages, p.Refused = nil, true
		return p, err
	}
	return p, nil
}

// renderHost makes host h's files for its member m into hp, compared with
// the host's, and the manifests of a restart of the member and of its retry.
func renderHost(in Input, h *host, m Member, hp *Host) error {
	var err error
	if *hp, err = HostFiles(in.Cluster, in.Runtime, in.PKI, h.cfg, m, AllParts); err != nil {
		return err
	}
	Compare(hp, h.facts)
	return nil
}

// checkPKI refuses a local PKI that is not the one the hosts trust.
func checkPKI(in Input, refused *refusals) {
	var trusting []string
	for _, ch := range in.Cluster.Spec.Hosts {
		if hf := in.Hosts[ch.Name]; hf != nil && len(hf.TrustedCAs) > 0 {
			trusting = append(trusting, ch.Name)
		}
	}
	if in.PKI.CACreated && len(trusting) > 0 {
		refused.add("", "%s has no etcd CA but %s already trust one: etcdadm would make a new CA and break the members' mutual TLS; copy the PKI directory from where it was created (the workstation or checkout that first ran etcdadm) to %s",
			path.Join(in.PKI.Dir, certs.CABaseName+".crt"), strings.Join(trusting, ", "), in.PKI.Dir)
		return
	}
	local := in.PKI.CA.Cert
	for _, ch := range in.Cluster.Spec.Hosts {
		hf := in.Hosts[ch.Name]
		if hf == nil || len(hf.TrustedCAs) == 0 {
			continue
		}
		switch unknown := unknownCAs(hf, in.PKI); {
		case len(unknown) == len(hf.TrustedCAs):
			refused.add(ch.Name, "trusts another etcd CA, %s; the local PKI's CA is %s. Put the cluster's own CA in %s",
				describeCA(hf.TrustedCAs[0]), describeCA(local), in.PKI.Dir)
		case len(unknown) > 0:
			refusePartlyKnown(in, ch.Name, unknown, refused)
		}
	}
}

// classify decides what each host is to its cluster, refusing what cannot be
// planned safely, and reports whether a cluster exists at all.
func classify(in Input, hosts []*host, refused *refusals) bool {
	c, e := in.Cluster, in.Etcd
	dataDir := c.Spec.Etcd.DataDir
	for _, h := range hosts {
		preflight(in, h, refused)
	}
	formed := e.Known()
	for _, h := range hosts {
		if h.facts.DataDir.HasWAL || h.runs() {
			formed = true
		}
	}
	if !formed {
		for _, h := range hosts {
			h.role = roleBootstrap
			if !h.facts.DataDir.Empty() {
				refused.add(h.cfg.Name, "data directory %s is not empty and holds no etcd member: it may belong to something else; move it away or empty it", dataDir)
			}
		}
		return false
	}
	boot := bootstrapCluster(hosts)
	for _, h := range hosts {
		name, peer := h.cfg.Name, manifests.PeerURL(h.cfg)
		h.member, h.listed = e.Member(name, peer)
		dd := h.facts.DataDir
		if identify(in, h.cfg, h.facts).foreign(e.ClusterID) {
			// Not this cluster's to reset, join or restart: most likely
			// the inventory's address is wrong.
			checkIdentity(in, h.cfg, h.facts, e.ClusterID, anyMember, false, refused)
			continue
		}
		switch {
		case h.listed && !h.member.HasPeerURL(peer):
			refused.add(name, "the cluster knows member %s (%s) at %v but the inventory puts it at %s; a member's address does not change in place: move it there, with its ID and data, with `etcdadm member move %s` (or, if its old host is gone for good, `etcdadm member replace %s`)",
				name, h.member.HexID(), h.member.PeerURLs, peer, name, name)
		case dd.HasWAL || h.runs():
			switch {
			case e.Known() && !h.listed && rejoinRecord(in, h) != "":
				markRejoin(in, h, rejoinRecord(in, h))
			case e.Known() && !h.listed:
				refused.add(name, "its data directory %s holds etcd member %s, which is not a member of this cluster (it was removed, or belongs to another cluster): `etcdadm reset %s` moves it under the backup directory so that the host can join again",
					dataDir, idOrUnknown(dd.MemberID), name)
			case e.Known() && dd.MemberID != 0 && dd.MemberID != h.member.ID:
				refused.add(name, "its data directory %s holds etcd member %s, but the cluster knows %s as member %s: `etcdadm reset %s` moves the stale data under the backup directory",
					dataDir, idOrUnknown(dd.MemberID), name, h.member.HexID(), name)
			case h.listed && h.member.Learner:
				h.role = roleJoin
			default:
				h.role = roleMember
			}
		case !dd.Empty():
			refused.add(name, "data directory %s is not empty and holds no etcd member: it may belong to something else; move it away or empty it", dataDir)
		case h.listed && h.member.Started():
			refused.add(name, "the cluster lists member %s (%s) as started, but its data directory %s is empty: its data is lost; replace the member with `etcdadm member replace %s`",
				name, h.member.HexID(), dataDir, name)
		case h.listed:
			h.role = roleJoin
			if !h.member.Learner && boot.names(peer) {
				h.role = roleBootstrap
			}
		case e.Known():
			h.role = roleJoin
		case boot.names(peer):
			h.role = roleBootstrap
		default:
			refused.add(name, "is not a member yet and no member answers, so it cannot be added now (%s)", e.ListError)
		}
	}
	return true
}

// preflight refuses a host etcdadm cannot work on.
func preflight(in Input, h *host, refused *refusals) {
	name, hf := h.cfg.Name, h.facts
	if hf.UID != 0 {
		refused.add(name, "commands run as uid %d, not root: log in as root or as a user with passwordless sudo", hf.UID)
	}
	for _, why := range in.Runtime.Preflight(runtimeHost(in, h)) {
		refused.add(name, "%s", why)
	}
	if hf.NoSS {
		refused.add(name, "ss (iproute2) is missing: etcdadm needs it to see who holds etcd's ports; install iproute2")
	}
	for _, l := range hf.Listeners {
		if l.Process != "etcd" {
			refused.add(name, "port %d is held by %s (%s): stop that process or move it", l.Port, l.Process, strings.TrimSpace(l.Line))
		}
	}
	if skew := hf.ClockSkew; skew > MaxClockSkew+hf.ClockError || -skew > MaxClockSkew+hf.ClockError {
		refused.add(name, "clock is %s off this machine's (at most %s allowed): synchronise it with NTP", skew.Round(time.Millisecond), MaxClockSkew)
	}
}

// MaxClockSkew is how far a host's clock may be from the operator's:
// certificates are backdated by minutes, but etcd's leases and a human
// reading logs across hosts suffer from skew long before that.
const MaxClockSkew = time.Second

func idOrUnknown(id uint64) string {
	if id == 0 {
		return "(ID unreadable)"
	}
	return etcdclient.FormatID(id)
}

// bootstrap is the --initial-cluster a cluster was brought up with, read
// from the manifests of members that hold data and started as "new".
type bootstrap struct {
	initialCluster string
	peers          []string
}

func bootstrapCluster(hosts []*host) bootstrap {
	for _, h := range hosts {
		m := h.facts.Manifest
		if m == nil || m.Err != "" || m.InitialClusterState != manifests.StateNew || !(h.facts.DataDir.HasWAL || h.runs()) {
			continue
		}
		var peers []string
		for _, urls := range facts.ParseInitialCluster(m.InitialCluster) {
			peers = append(peers, urls...)
		}
		return bootstrap{initialCluster: m.InitialCluster, peers: peers}
	}
	return bootstrap{}
}

func (b bootstrap) names(peer string) bool { return slices.Contains(b.peers, peer) }

// memberFor decides how a host's member starts.
func memberFor(in Input, hosts []*host, h *host, formed bool, joined *[]etcdclient.Member) Member {
	c := in.Cluster
	if !formed {
		return Bootstrap(c)
	}
	m := h.facts.Manifest
	kept := m != nil && m.Err == "" && m.Name == h.cfg.Name && m.InitialCluster != "" &&
		(m.InitialClusterState == manifests.StateNew || m.InitialClusterState == manifests.StateExisting ||
			m.InitialClusterState == "" && m.KubeadmOrder && c.Spec.Topology == config.TopologyStacked)
	var keep Member
	if kept {
		keep = Member{InitialCluster: m.InitialCluster, State: m.InitialClusterState, Restart: m.Restart, KubeadmOrder: m.KubeadmOrder && c.Spec.Topology == config.TopologyStacked,
			Why: "kept from the member's manifest: etcd reads it only on an empty data directory"}
	}
	peer := manifests.PeerURL(h.cfg)
	switch h.role {
	case roleMember:
		if kept {
			return keep
		}
		ic := manifests.InitialCluster(c.Spec.Hosts)
		if in.Etcd.Known() {
			ic = etcdclient.InitialCluster(in.Etcd.Members, h.cfg.Name, peer)
		} else if b := bootstrapCluster(hosts); b.initialCluster != "" {
			ic = b.initialCluster
		}
		return Member{InitialCluster: ic, State: manifests.StateExisting, Why: "its data directory holds the member; the manifest is restored"}
	case roleBootstrap:
		if kept && m.InitialClusterState == manifests.StateNew {
			return keep
		}
		return Member{InitialCluster: bootstrapCluster(hosts).initialCluster, State: manifests.StateNew, Why: "named in the running members' --initial-cluster: the bring-up goes on"}
	default:
		if kept && m.InitialClusterState == manifests.StateExisting {
			return keep
		}
		members := append(slices.Clone(in.Etcd.Members), *joined...)
		if !h.listed {
			*joined = append(*joined, etcdclient.Member{Name: h.cfg.Name, PeerURLs: []string{peer}})
		}
		return Member{InitialCluster: etcdclient.InitialCluster(members, h.cfg.Name, peer), State: manifests.StateExisting, Why: "joins the running cluster as a learner"}
	}
}
