package plan

import (
	"fmt"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
)

// identity is what runs, or lies, on an inventory host, by the IDs it
// gives: the member its etcd answers as at the host's client URL, else the
// one its data directory's write-ahead log holds. A command that stops a
// host's etcd or moves its data aside first matches it to the member it
// names.
type identity struct {
	host config.Host
	// runs is set when an etcd listens on the host's client port; pid is
	// its process.
	runs bool
	pid  int
	// answered is set when that etcd answered its status; unanswered says
	// why it did not.
	answered   bool
	unanswered string
	memberID   uint64
	clusterID  uint64
}

// identify reads host h's identity from its facts and etcd's answers.
func identify(in Input, h config.Host, hf *facts.Host) identity {
	id := identity{host: h, runs: hf.RunsEtcd()}
	if id.runs {
		id.pid = hf.Etcd[0].PID
		u := manifests.ClientURL(h)
		if st, ok := in.Etcd.At(u); ok {
			id.answered, id.memberID, id.clusterID = true, st.MemberID, st.ClusterID
			return id
		}
		id.unanswered = "it was not asked"
		if st, ok := in.Etcd.Unanswered[u]; ok && st.Error != "" {
			id.unanswered = st.Error
		}
	}
	if dd := hf.DataDir; dd.HasWAL && dd.MemberID != 0 {
		id.memberID, id.clusterID = dd.MemberID, dd.ClusterID
	}
	return id
}

// known reports whether the IDs could be read.
func (id identity) known() bool { return id.memberID != 0 }

// foreign reports whether it belongs to another cluster than cid.
func (id identity) foreign(cid uint64) bool {
	return id.clusterID != 0 && cid != 0 && id.clusterID != cid
}

// String says what was found, for a refusal.
func (id identity) String() string {
	what := "member " + etcdclient.FormatID(id.memberID)
	if id.clusterID != 0 {
		what += " of cluster " + etcdclient.FormatID(id.clusterID)
	}
	switch {
	case id.answered:
		return fmt.Sprintf("its etcd (pid %d) answers at %s as %s", id.pid, manifests.ClientURL(id.host), what)
	case id.runs:
		return fmt.Sprintf("its etcd (pid %d) did not answer at %s (%s), and its data directory holds %s", id.pid, manifests.ClientURL(id.host), id.unanswered, what)
	}
	return "its data directory holds " + what
}

// member is the member of this cluster it is, when the member list has it.
func (id identity) member(in Input) (etcdclient.Member, bool) {
	if !id.known() || id.foreign(in.Etcd.ClusterID) {
		return etcdclient.Member{}, false
	}
	return in.Etcd.MemberByID(id.memberID)
}

// anyMember is the want of checkIdentity for a command that stops every
// member of the cluster (recover).
const anyMember = ^uint64(0)

// checkIdentity refuses a plan that would stop host h's etcd or move its
// data aside when what is there is not this cluster's (cid) or is another
// current member than want (0: none; anyMember: any): an address that reaches
// another cluster's member, or another member of this one, must not cost
// it its member. An etcd that runs and cannot be identified is refused
// too. Another cluster's data where no etcd runs is refused unless
// foreignData (reset: the host is being cleaned for reuse).
func checkIdentity(in Input, h config.Host, hf *facts.Host, cid, want uint64, foreignData bool, refused *refusals) identity {
	id := identify(in, h, hf)
	name, addr := h.Name, h.Address
	switch {
	case id.foreign(cid) && id.runs:
		refused.add(name, "runs a member of another cluster: %s, and this cluster is %s; check the inventory's address of %s (%s): etcdadm touches no member of another cluster",
			id, etcdclient.FormatID(cid), name, addr)
	case id.foreign(cid) && !foreignData:
		refused.add(name, "%s, of another cluster than this one (%s); check the inventory's address of %s (%s); if it is right, that data is left from another cluster: `etcdadm reset %s` moves it under the backup directory",
			id, etcdclient.FormatID(cid), name, addr, name)
	case id.runs && !id.known():
		refused.add(name, "an etcd runs there (pid %d) that cannot be identified: it did not answer at %s (%s), and its data directory %s holds no member whose IDs can be read; etcdadm stops no etcd it cannot match to %s: stop it by hand if it is %s's, then run again",
			id.pid, manifests.ClientURL(h), id.unanswered, in.Cluster.Spec.Etcd.DataDir, name, name)
	default:
		if m, ok := id.member(in); ok && want != anyMember && m.ID != want {
			refused.add(name, "%s, which is member %s (%s, peer URLs %v) of this cluster, not %s; check the inventory's address of %s (%s)",
				id, orID(m), m.HexID(), m.PeerURLs, wanted(want, name), name, addr)
		}
	}
	return id
}

// wanted names the member a command expected on a host.
func wanted(id uint64, host string) string {
	if id == 0 {
		return "a member the command may stop"
	}
	return "member " + etcdclient.FormatID(id) + ", the one the cluster knows as " + host
}
