package facts

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
)

// Cluster is what etcd says of itself.
type Cluster struct {
	// Members is the member list; nil when no member could give one.
	Members []etcdclient.Member `json:"members"`
	// ListFrom is the client URL that gave the list; Serializable is set
	// when no quorum could, and the list is one member's own view.
	ListFrom     string `json:"listFrom,omitempty"`
	Serializable bool   `json:"serializable,omitempty"`
	// ListError says why there is no member list.
	ListError string `json:"listError,omitempty"`
	// Status is what each member that was asked says, by member ID; a member
	// that did not answer has an entry only under its client URL in Unanswered.
	Status     map[uint64]etcdclient.MemberStatus `json:"-"`
	Unanswered map[string]etcdclient.MemberStatus `json:"-"`
	LeaderID   uint64                             `json:"-"`
	// ClusterID is the cluster's ID: the one its data on the hosts holds,
	// else the one most members that answered name. Foreign are, by
	// client URL, the members of other clusters that answered at an
	// inventory host's address; they count for nothing here.
	ClusterID uint64                             `json:"clusterID,omitempty"`
	Foreign   map[string]etcdclient.MemberStatus `json:"-"`
	// Alarms are the cluster's active alarms. etcd's alarm list names the
	// member that raised each, but needs a quorum; without one they come
	// from the members' statuses, which name no member (Member empty).
	Alarms []etcdclient.Alarm `json:"alarms,omitempty"`
	// QuorumLost is set only when the loss of quorum is confirmed: no member
	// that answered named a leader, in two reads some seconds apart, and
	// the members that did not answer in time could not hold a quorum of
	// their own; or no member runs at all. Slow members, alarms and an
	// election under way are not lost quorum.
	QuorumLost bool `json:"quorumLost,omitempty"`
	// QuorumWhy says what the reads saw when no leader was named: why the
	// loss is confirmed, or why it is not.
	QuorumWhy string `json:"quorumWhy,omitempty"`
}

// NoLeaderRecheck is how long GatherCluster waits before it asks the
// members again when none named a leader: longer than an election, so that
// a member cut off from its leader has given it up, and a new leader has
// been elected if a quorum can elect one.
const NoLeaderRecheck = 3 * time.Second

// Reader is what GatherCluster asks etcd through; *etcdclient.Client is one.
type Reader interface {
	Status(ctx context.Context, members []etcdclient.Endpoint, timeout time.Duration) []etcdclient.MemberStatus
	MemberList(ctx context.Context, urls []string, timeout time.Duration) (*etcdclient.MemberList, error)
	MemberListOf(ctx context.Context, urls []string, timeout time.Duration, serializable bool) (*etcdclient.MemberList, error)
	AlarmList(ctx context.Context, urls []string, timeout time.Duration) ([]etcdclient.Alarm, error)
}

// GatherCluster asks every endpoint for its status, then the first that
// answered for the member list (linearizable, else serializable), then the
// members the list names that were not asked yet, but those known to be
// down. Every call has its own deadline of timeout.
//
// A member that answers for another cluster than clusterID (the one the
// hosts' data holds; when 0, the one most members that answered name) is
// kept apart, in Foreign: an address that reaches another cluster's
// member must not lend it this cluster's name.
//
// When no member names a leader, the members are asked again after recheck
// (NoLeaderRecheck for a run): only a second read without a leader
// confirms that quorum is lost.
func GatherCluster(ctx context.Context, client Reader, endpoints []etcdclient.Endpoint, down []string, clusterID uint64, timeout, recheck time.Duration) *Cluster {
	c := &Cluster{Status: map[uint64]etcdclient.MemberStatus{}, Unanswered: map[string]etcdclient.MemberStatus{}, Foreign: map[string]etcdclient.MemberStatus{}, ClusterID: clusterID}
	asked := map[string]bool{}
	for _, u := range down {
		asked[u] = true
	}
	first := client.Status(ctx, endpoints, timeout)
	if c.ClusterID == 0 {
		c.ClusterID = mostNamed(first)
	}
	c.record(first, asked)
	var second []etcdclient.MemberStatus
	if !namesLeader(c.ours(first)) && sleep(ctx, recheck) == nil {
		// The second read replaces the first: it is the fresher.
		c.Status, c.Unanswered, c.Foreign = map[uint64]etcdclient.MemberStatus{}, map[string]etcdclient.MemberStatus{}, map[string]etcdclient.MemberStatus{}
		second = client.Status(ctx, endpoints, timeout)
		c.record(second, asked)
	}
	voters, leader := c.list(ctx, client, endpoints, asked, timeout)
	if second != nil {
		c.judgeQuorum(c.ours(second), len(down), recheck)
	}
	c.gatherAlarms(ctx, client, voters, leader, timeout)
	return c
}

// list asks the members that answered for the member list, then the
// members it names that were not asked yet, and returns the voters that
// answered and whether one of them names a leader.
func (c *Cluster) list(ctx context.Context, client Reader, endpoints []etcdclient.Endpoint, asked map[string]bool, timeout time.Duration) ([]string, bool) {
	// Ask only members that answered: an unreachable one holds every call
	// until its deadline. With no leader anywhere, a linearizable list would
	// wait for one in vain.
	var voters, learners []string
	leader := false
	for _, st := range c.Status {
		if st.Learner {
			learners = append(learners, st.Endpoint)
		} else {
			voters = append(voters, st.Endpoint)
		}
		leader = leader || st.LeaderID != 0
	}
	slices.Sort(voters)
	slices.Sort(learners)
	var list *etcdclient.MemberList
	var err error
	switch {
	case len(voters)+len(learners) == 0:
		var errs []string
		for _, e := range endpoints {
			if st, ok := c.Unanswered[e.ClientURL]; ok {
				errs = append(errs, e.Name+": "+st.Error)
			}
		}
		c.ListError = "no member answered: " + strings.Join(errs, "; ")
		return nil, false
	case leader && len(voters) > 0:
		list, err = client.MemberList(ctx, voters, timeout)
	default:
		list, err = client.MemberListOf(ctx, append(voters, learners...), timeout, true)
	}
	if err != nil {
		c.ListError = err.Error()
		return voters, leader
	}
	c.Members, c.ListFrom, c.Serializable = list.Members, list.From, list.Serializable
	if c.ClusterID == 0 {
		c.ClusterID = list.ClusterID
	}
	var more []etcdclient.Endpoint
	for _, m := range c.Members {
		if _, ok := c.Status[m.ID]; ok || len(m.ClientURLs) == 0 || asked[m.ClientURLs[0]] {
			continue
		}
		more = append(more, etcdclient.Endpoint{Name: m.Name, ClientURL: m.ClientURLs[0]})
	}
	if len(more) > 0 {
		c.record(client.Status(ctx, more, timeout), asked)
	}
	return voters, leader
}

// gatherAlarms reads the alarms when a member's status tells of one: from
// etcd's alarm list when there is a leader to read it through, else from
// the statuses alone.
func (c *Cluster) gatherAlarms(ctx context.Context, client Reader, voters []string, leader bool, timeout time.Duration) {
	var types []string
	for _, st := range c.Status {
		for _, a := range st.Alarms {
			if !slices.Contains(types, a) {
				types = append(types, a)
			}
		}
	}
	if len(types) == 0 {
		return
	}
	if leader && len(voters) > 0 {
		if alarms, err := client.AlarmList(ctx, voters, timeout); err == nil && len(alarms) > 0 {
			c.Alarms = alarms
			return
		}
	}
	slices.Sort(types)
	for _, t := range types {
		c.Alarms = append(c.Alarms, etcdclient.Alarm{Type: t})
	}
}

// judgeQuorum decides, from two reads without a leader, whether the loss
// of quorum is confirmed. down members were known not to run before either
// read (nothing listens on their port).
func (c *Cluster) judgeQuorum(second []etcdclient.MemberStatus, down int, apart time.Duration) {
	if c.LeaderSeen() {
		c.QuorumWhy = "no member named a leader at first, but one did " + apart.String() + " later: an election was under way"
		return
	}
	var silent, quiet []string
	answered := 0
	for _, st := range second {
		switch {
		case st.Answered():
			answered++
			quiet = append(quiet, st.Name)
		case !st.Refused:
			// It took the connection but did not answer (slow, or refusing
			// this client): it runs, and may be in a quorum with a leader
			// none of those that answered can reach.
			silent = append(silent, st.Name)
		}
	}
	voters := len(second) + down
	if n := len(c.Voters()); n > 0 {
		voters = n
	}
	q := Quorum(voters)
	switch {
	case len(silent) >= q:
		c.QuorumWhy = fmt.Sprintf("no member that answered named a leader, but %s took the connection without answering: %d of %d voters, enough for a quorum of %d of their own; they may be slow, not lost",
			strings.Join(silent, ", "), len(silent), voters, q)
	case answered == 0 && len(silent) == 0:
		c.QuorumLost = true
		c.QuorumWhy = "no member runs: none took a connection, in two reads " + apart.String() + " apart"
	default:
		c.QuorumLost = true
		c.QuorumWhy = "no member named a leader in two reads " + apart.String() + " apart"
		if answered > 0 {
			c.QuorumWhy += " (" + strings.Join(quiet, ", ") + " answered without one)"
		}
		if len(silent) > 0 {
			c.QuorumWhy += fmt.Sprintf("; %s did not answer, too few for a quorum of %d", strings.Join(silent, ", "), q)
		}
	}
}

// namesLeader reports whether a member that answered named a leader.
func namesLeader(sts []etcdclient.MemberStatus) bool {
	return slices.ContainsFunc(sts, func(st etcdclient.MemberStatus) bool { return st.Answered() && st.LeaderID != 0 })
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// ours leaves out of sts the members of other clusters.
func (c *Cluster) ours(sts []etcdclient.MemberStatus) []etcdclient.MemberStatus {
	return slices.DeleteFunc(slices.Clone(sts), func(st etcdclient.MemberStatus) bool {
		_, foreign := c.Foreign[st.Endpoint]
		return foreign
	})
}

// mostNamed is the cluster ID most of the members that answered name; of
// two named as often, the first's.
func mostNamed(sts []etcdclient.MemberStatus) uint64 {
	count := map[uint64]int{}
	var best uint64
	for _, st := range sts {
		if st.ClusterID == 0 {
			continue
		}
		count[st.ClusterID]++
		if best == 0 || count[st.ClusterID] > count[best] {
			best = st.ClusterID
		}
	}
	return best
}

func (c *Cluster) record(sts []etcdclient.MemberStatus, asked map[string]bool) {
	for _, st := range sts {
		asked[st.Endpoint] = true
		if !st.Answered() {
			c.Unanswered[st.Endpoint] = st
			continue
		}
		if st.ClusterID != 0 && c.ClusterID != 0 && st.ClusterID != c.ClusterID {
			c.Foreign[st.Endpoint] = st
			continue
		}
		c.Status[st.MemberID] = st
		if st.LeaderID != 0 && st.Healthy {
			c.LeaderID = st.LeaderID
		}
	}
}

// At is what answered at client URL u: a member of this cluster, or of
// another (Foreign); ok is false when nothing did.
func (c *Cluster) At(u string) (st etcdclient.MemberStatus, ok bool) {
	if c == nil {
		return st, false
	}
	for _, st := range c.Status {
		if st.Endpoint == u {
			return st, true
		}
	}
	st, ok = c.Foreign[u]
	return st, ok
}

// Known reports whether there is a member list.
func (c *Cluster) Known() bool { return c != nil && c.Members != nil }

// Member returns the member with the given name or peer URL.
func (c *Cluster) Member(name, peerURL string) (etcdclient.Member, bool) {
	if c == nil {
		return etcdclient.Member{}, false
	}
	for _, m := range c.Members {
		if m.HasPeerURL(peerURL) {
			return m, true
		}
	}
	for _, m := range c.Members {
		if name != "" && m.Name == name {
			return m, true
		}
	}
	return etcdclient.Member{}, false
}

// MemberByID returns the member with the ID.
func (c *Cluster) MemberByID(id uint64) (etcdclient.Member, bool) {
	if c == nil {
		return etcdclient.Member{}, false
	}
	for _, m := range c.Members {
		if m.ID == id {
			return m, true
		}
	}
	return etcdclient.Member{}, false
}

// Healthy reports whether the member answered a read: a voter's needs quorum.
func (c *Cluster) Healthy(id uint64) bool {
	if c == nil {
		return false
	}
	st, ok := c.Status[id]
	return ok && st.Healthy
}

// Voters are the voting members.
func (c *Cluster) Voters() []etcdclient.Member {
	if c == nil {
		return nil
	}
	var out []etcdclient.Member
	for _, m := range c.Members {
		if !m.Learner {
			out = append(out, m)
		}
	}
	return out
}

// HealthyVoters counts the voting members that are healthy.
func (c *Cluster) HealthyVoters() int {
	n := 0
	for _, m := range c.Voters() {
		if c.Healthy(m.ID) {
			n++
		}
	}
	return n
}

// Quorum is how many voters a cluster of n voters needs.
func Quorum(n int) int { return n/2 + 1 }

// HasQuorum reports whether enough voters are healthy.
func (c *Cluster) HasQuorum() bool {
	v := len(c.Voters())
	return v > 0 && c.HealthyVoters() >= Quorum(v)
}

// LeaderSeen reports whether a member that answered names a leader,
// healthy or not: a quorum elected one.
func (c *Cluster) LeaderSeen() bool {
	if c == nil {
		return false
	}
	for _, st := range c.Status {
		if st.LeaderID != 0 {
			return true
		}
	}
	return false
}

// Alarmed returns the active alarms of the given type ("NOSPACE", "CORRUPT").
func (c *Cluster) Alarmed(kind string) []etcdclient.Alarm {
	if c == nil {
		return nil
	}
	var out []etcdclient.Alarm
	for _, a := range c.Alarms {
		if a.Type == kind {
			out = append(out, a)
		}
	}
	return out
}

// Slow names the voting members that took the connection but did not
// answer their status or read in time.
func (c *Cluster) Slow() []string {
	if c == nil {
		return nil
	}
	var out []string
	for _, st := range c.Status {
		if st.TimedOut {
			out = append(out, st.Name)
		}
	}
	for _, st := range c.Unanswered {
		if st.TimedOut {
			out = append(out, st.Name)
		}
	}
	slices.Sort(out)
	return out
}

// Leader returns the leader's member ID, 0 when none is known.
func (c *Cluster) Leader() uint64 {
	if c == nil {
		return 0
	}
	return c.LeaderID
}
