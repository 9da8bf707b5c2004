package facts

import (
	"context"
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
}

// GatherCluster asks every endpoint for its status, then the first that
// answered for the member list (linearizable, else serializable), then the
// members the list names that were not asked yet, but those known to be
// down. Every call has its own deadline of timeout.
func GatherCluster(ctx context.Context, client *etcdclient.Client, endpoints []etcdclient.Endpoint, down []string, timeout time.Duration) *Cluster {
	c := &Cluster{Status: map[uint64]etcdclient.MemberStatus{}, Unanswered: map[string]etcdclient.MemberStatus{}}
	asked := map[string]bool{}
	for _, u := range down {
		asked[u] = true
	}
	c.record(client.Status(ctx, endpoints, timeout), asked)
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
		return c
	case leader && len(voters) > 0:
		list, err = client.MemberList(ctx, voters, timeout)
	default:
		list, err = client.MemberListOf(ctx, append(voters, learners...), timeout, true)
	}
	if err != nil {
		c.ListError = err.Error()
		return c
	}
	c.Members, c.ListFrom, c.Serializable = list.Members, list.From, list.Serializable
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
	return c
}

func (c *Cluster) record(sts []etcdclient.MemberStatus, asked map[string]bool) {
	for _, st := range sts {
		asked[st.Endpoint] = true
		if !st.Answered() {
			c.Unanswered[st.Endpoint] = st
			continue
		}
		c.Status[st.MemberID] = st
		if st.LeaderID != 0 && st.Healthy {
			c.LeaderID = st.LeaderID
		}
	}
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

// Leader returns the leader's member ID, 0 when none is known.
func (c *Cluster) Leader() uint64 {
	if c == nil {
		return 0
	}
	return c.LeaderID
}
