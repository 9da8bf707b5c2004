package etcdclient

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Member is one entry of etcd's member list.
type Member struct {
	ID         uint64   `json:"-"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs,omitempty"`
	Learner    bool     `json:"learner"`
}

// Started reports whether the member's process has joined at least once: a
// member added but never started has no client URLs yet.
func (m Member) Started() bool { return len(m.ClientURLs) > 0 }

// HexID is the member ID as etcdctl prints it.
func (m Member) HexID() string { return FormatID(m.ID) }

// HasPeerURL reports whether u is one of the member's peer URLs.
func (m Member) HasPeerURL(u string) bool { return slices.Contains(m.PeerURLs, u) }

func fromPB(ms []*etcdserverpb.Member) []Member {
	out := make([]Member, len(ms))
	for i, m := range ms {
		out[i] = Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, Learner: m.IsLearner}
	}
	return out
}

// MemberList is the member list and where it came from.
type MemberList struct {
	Members []Member
	// From is the client URL that answered.
	From string
	// Serializable is set when no member could answer with quorum and the
	// list is one member's own view, possibly stale.
	Serializable bool
	// ClusterID is the cluster's ID, as the member that answered says.
	ClusterID uint64
}

// MemberList asks the endpoints in turn for the member list: a
// linearizable one first, which needs quorum, then, if no endpoint could
// give one, a serializable one.
func (c *Client) MemberList(ctx context.Context, urls []string, timeout time.Duration) (*MemberList, error) {
	list, err := c.MemberListOf(ctx, urls, timeout, false)
	if err == nil || ctx.Err() != nil {
		return list, err
	}
	if list, serr := c.MemberListOf(ctx, urls, timeout, true); serr == nil {
		return list, nil
	}
	return nil, err
}

// MemberListOf asks the endpoints in turn for a linearizable member list,
// or a serializable one (one member's own view, which needs no quorum).
func (c *Client) MemberListOf(ctx context.Context, urls []string, timeout time.Duration, serializable bool) (*MemberList, error) {
	var opts []clientv3.OpOption
	if serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	var list *MemberList
	err := c.first(ctx, urls, timeout, func(ctx context.Context, cli *clientv3.Client, u string) error {
		resp, err := cli.MemberList(ctx, opts...)
		if err == nil {
			list = &MemberList{Members: fromPB(resp.Members), From: u, Serializable: serializable, ClusterID: resp.Header.ClusterId}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("no member answered the member list: %w", err)
	}
	return list, nil
}

// MemberUpdate sets the peer URLs of member id, through the first endpoint
// that takes it; the member's process must then advertise them. Setting the
// URLs it has already is a success.
func (c *Client) MemberUpdate(ctx context.Context, urls []string, id uint64, peerURLs []string, timeout time.Duration) error {
	err := c.first(ctx, urls, timeout, func(ctx context.Context, cli *clientv3.Client, _ string) error {
		_, err := cli.MemberUpdate(ctx, id, peerURLs)
		return err
	})
	if err != nil {
		return fmt.Errorf("set the peer URLs of member %s to %v: %w", FormatID(id), peerURLs, err)
	}
	return nil
}

// AddLearner adds a learner with the given peer URL through the first
// endpoint that accepts it and returns it with the member list after the
// add. A member that already has the peer URL is returned as it is, so that
// a repeated call after a lost answer adds nothing. etcd refuses an add
// until every member has been connected for five seconds ("unhealthy
// cluster"), as right after a member restarted; that is retried until
// deadline.
func (c *Client) AddLearner(ctx context.Context, voters []string, peerURL string, timeout, deadline time.Duration) (Member, []Member, error) {
	if timeout <= 0 {
		timeout = DefaultCallTimeout
	}
	end := time.Now().Add(deadline)
	for {
		m, ms, unhealthy, err := c.addLearner(ctx, voters, peerURL, timeout)
		if err == nil || !unhealthy || time.Now().After(end) || ctx.Err() != nil {
			return m, ms, err
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (c *Client) addLearner(ctx context.Context, voters []string, peerURL string, timeout time.Duration) (Member, []Member, bool, error) {
	var errs []error
	unhealthy := false
	for _, u := range voters {
		cli, err := c.endpoint(u)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if m, ms, ok := c.findPeer(ctx, cli, peerURL, timeout); ok {
			return m, ms, false, nil
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		resp, err := cli.MemberAddAsLearner(cctx, []string{peerURL})
		cancel()
		if errors.Is(err, rpctypes.ErrPeerURLExist) {
			if m, ms, ok := c.findPeer(ctx, cli, peerURL, timeout); ok {
				return m, ms, false, nil
			}
		}
		if err != nil {
			unhealthy = unhealthy || errors.Is(err, rpctypes.ErrUnhealthy)
			errs = append(errs, fmt.Errorf("%s: %s", u, describe(err)))
			continue
		}
		return fromPB([]*etcdserverpb.Member{resp.Member})[0], fromPB(resp.Members), false, nil
	}
	return Member{}, nil, unhealthy, fmt.Errorf("add learner %s: %w", peerURL, errors.Join(errs...))
}

func (c *Client) findPeer(ctx context.Context, cli *clientv3.Client, peerURL string, timeout time.Duration) (Member, []Member, bool) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := cli.MemberList(cctx)
	if err != nil {
		return Member{}, nil, false
	}
	ms := fromPB(resp.Members)
	for _, m := range ms {
		if m.HasPeerURL(peerURL) {
			return m, ms, true
		}
	}
	return Member{}, ms, false
}

// Promote makes the learner id a voting member, through voting endpoints
// only (a learner serves no promotion). etcd refuses while the learner is
// not in sync with the leader; that is retried every 500ms until deadline,
// as kubeadm does. A member that is already a voter is a success.
func (c *Client) Promote(ctx context.Context, voters []string, id uint64, deadline time.Duration) error {
	end := time.Now().Add(deadline)
	var last error
	for {
		for _, u := range voters {
			cli, err := c.endpoint(u)
			if err != nil {
				last = err
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, DefaultCallTimeout)
			list, err := cli.MemberList(cctx)
			cancel()
			if err == nil {
				found := false
				for _, m := range list.Members {
					if m.ID == id {
						found = true
						if !m.IsLearner {
							return nil
						}
					}
				}
				if !found {
					return fmt.Errorf("promote %s: %w", FormatID(id), rpctypes.ErrMemberNotFound)
				}
			}
			cctx, cancel = context.WithTimeout(ctx, DefaultCallTimeout)
			_, err = cli.MemberPromote(cctx, id)
			cancel()
			if err == nil || errors.Is(err, rpctypes.ErrMemberNotLearner) {
				return nil
			}
			last = fmt.Errorf("%s: %s", u, describe(err))
			if errors.Is(err, rpctypes.ErrMemberLearnerNotReady) {
				// The leader decides; asking another endpoint changes nothing.
				break
			}
		}
		if time.Now().After(end) || ctx.Err() != nil {
			return fmt.Errorf("promote %s: still not promoted after %s: %w", FormatID(id), deadline, last)
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Remove removes member id through the first endpoint that can; a member
// already gone is a success. etcd refuses a removal that would cost quorum
// ("unhealthy cluster"); that is retried until deadline, since a member
// restarting a moment ago counts as not connected for five seconds.
func (c *Client) Remove(ctx context.Context, urls []string, id uint64, deadline time.Duration) error {
	end := time.Now().Add(deadline)
	var last error
	for {
		for _, u := range urls {
			cli, err := c.endpoint(u)
			if err != nil {
				last = err
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, DefaultCallTimeout)
			_, err = cli.MemberRemove(cctx, id)
			cancel()
			if err == nil || errors.Is(err, rpctypes.ErrMemberNotFound) {
				return nil
			}
			last = fmt.Errorf("%s: %s", u, describe(err))
		}
		if time.Now().After(end) || ctx.Err() != nil {
			return fmt.Errorf("remove member %s: %w", FormatID(id), last)
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// InitialCluster is etcd's --initial-cluster for a member joining a cluster
// whose members are ms: every member by name with its first peer URL, a
// member not started yet by its hex ID (etcd merges entries of the same
// name, so empty names would collapse), and self under its own name.
func InitialCluster(ms []Member, self, selfPeerURL string) string {
	var parts []string
	listed := false
	for _, m := range ms {
		if len(m.PeerURLs) == 0 {
			continue
		}
		name := m.Name
		switch {
		case m.HasPeerURL(selfPeerURL):
			name = self
			listed = listed || m.PeerURLs[0] == selfPeerURL
		case name == "":
			name = m.HexID()
		}
		parts = append(parts, name+"="+m.PeerURLs[0])
	}
	if !listed {
		parts = append(parts, self+"="+selfPeerURL)
	}
	return strings.Join(parts, ",")
}

// MoveLeaderAway hands leadership to another healthy voting member when the
// member with the hex ID leads, so that removing or stopping it costs no
// election; otherwise it does nothing.
func (c *Client) MoveLeaderAway(ctx context.Context, urls []string, hexID string) error {
	sts := c.Status(ctx, endpointsOf(urls), DefaultCallTimeout)
	leader, leaderID := leaderOf(sts)
	if leaderID == 0 || FormatID(leaderID) != hexID {
		return nil
	}
	if leader == nil {
		return fmt.Errorf("move leadership away from %s: it leads, but is not among the endpoints %v", hexID, urls)
	}
	var to uint64
	for _, st := range sts {
		if st.Healthy && !st.Learner && st.ID != hexID {
			to = st.MemberID
			break
		}
	}
	if to == 0 {
		return fmt.Errorf("move leadership away from %s: no other healthy voting member", hexID)
	}
	return c.transferLeadership(ctx, *leader, to, 10*time.Second)
}

// MoveLeader hands leadership to the voting member toID. Only the leader
// can, so the call goes to the member of urls that leads, found from their
// status; a member that leads already is a success.
func (c *Client) MoveLeader(ctx context.Context, urls []string, toID uint64, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultCallTimeout
	}
	sts := c.Status(ctx, endpointsOf(urls), timeout)
	leader, leaderID := leaderOf(sts)
	switch {
	case leaderID == 0:
		return fmt.Errorf("move leadership to %s: no leader (%s)", FormatID(toID), strings.Join(Unhealthy(sts), "; "))
	case leaderID == toID:
		return nil
	case leader == nil:
		return fmt.Errorf("move leadership to %s: the leader %s is not among the endpoints %v", FormatID(toID), FormatID(leaderID), urls)
	}
	return c.transferLeadership(ctx, *leader, toID, timeout)
}

// leaderOf returns, among the members' statuses, the one of the member
// that leads, and the leader's ID as the members of the latest term see it;
// the status is nil when the leader is not among them.
func leaderOf(sts []MemberStatus) (*MemberStatus, uint64) {
	var leader *MemberStatus
	var id, term uint64
	for i, st := range sts {
		if st.Leader && (leader == nil || st.RaftTerm > leader.RaftTerm) {
			leader = &sts[i]
		}
		if st.LeaderID != 0 && st.RaftTerm >= term {
			id, term = st.LeaderID, st.RaftTerm
		}
	}
	if leader != nil && leader.RaftTerm >= term {
		return leader, leader.MemberID
	}
	return nil, id
}

// transferLeadership asks the leader to hand over to the member to; the call
// returns once to leads.
func (c *Client) transferLeadership(ctx context.Context, leader MemberStatus, to uint64, timeout time.Duration) error {
	cli, err := c.endpoint(leader.Endpoint)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := cli.MoveLeader(cctx, to); err != nil {
		return fmt.Errorf("move leadership from %s to %s: %w", leader.ID, FormatID(to), &endpointError{leader.Endpoint, err})
	}
	return nil
}

func endpointsOf(urls []string) []Endpoint {
	eps := make([]Endpoint, len(urls))
	for i, u := range urls {
		eps[i] = Endpoint{ClientURL: u}
	}
	return eps
}
