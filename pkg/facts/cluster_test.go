package facts_test

import (
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
)

// threeVoters is a cluster of three voters and a learner; healthy lists the
// member IDs whose status says so.
func threeVoters(healthy ...uint64) *facts.Cluster {
	c := &facts.Cluster{
		Members: []etcdclient.Member{
			{ID: 1, Name: "infra0", PeerURLs: []string{"https://10.0.0.6:2380"}, ClientURLs: []string{"https://10.0.0.6:2379"}},
			{ID: 2, Name: "infra1", PeerURLs: []string{"https://10.0.0.7:2380"}, ClientURLs: []string{"https://10.0.0.7:2379"}},
			{ID: 3, Name: "infra2", PeerURLs: []string{"https://10.0.0.8:2380", "https://[fd00::8]:2380"}},
			{ID: 4, Name: "infra3", PeerURLs: []string{"https://10.0.0.9:2380"}, Learner: true},
		},
		Status:     map[uint64]etcdclient.MemberStatus{},
		Unanswered: map[string]etcdclient.MemberStatus{},
	}
	for _, id := range healthy {
		c.Status[id] = etcdclient.MemberStatus{MemberID: id, Healthy: true}
	}
	// The learner answers; it never counts towards quorum.
	c.Status[4] = etcdclient.MemberStatus{MemberID: 4, Healthy: true, Learner: true}
	return c
}

func TestClusterMember(t *testing.T) {
	c := threeVoters()
	for _, tc := range []struct {
		name, peerURL string
		wantID        uint64
		found         bool
	}{
		{"", "https://10.0.0.7:2380", 2, true},
		{"infra0", "", 1, true},
		{"", "https://[fd00::8]:2380", 3, true}, // a second peer URL
		// The peer URL wins over the name: a member renamed, or a name reused.
		{"infra0", "https://10.0.0.8:2380", 3, true},
		{"infra1", "https://10.9.9.9:2380", 2, true},
		{"nobody", "https://10.9.9.9:2380", 0, false},
		{"", "", 0, false},
		{"INFRA0", "", 0, false},
	} {
		m, ok := c.Member(tc.name, tc.peerURL)
		if ok != tc.found || m.ID != tc.wantID {
			t.Errorf("Member(%q, %q) = %d, %v; want %d, %v", tc.name, tc.peerURL, m.ID, ok, tc.wantID, tc.found)
		}
	}
	// A member added but never started has no name yet: only its peer URL finds it.
	c.Members = append(c.Members, etcdclient.Member{ID: 5, PeerURLs: []string{"https://10.0.0.10:2380"}})
	if m, ok := c.Member("", "https://10.0.0.10:2380"); !ok || m.ID != 5 {
		t.Errorf("unstarted member: %+v, %v", m, ok)
	}
	if m, ok := c.MemberByID(4); !ok || m.Name != "infra3" {
		t.Errorf("MemberByID(4) = %+v, %v", m, ok)
	}
	if _, ok := c.MemberByID(42); ok {
		t.Errorf("MemberByID(42) found")
	}
}

func TestClusterVotersAndQuorum(t *testing.T) {
	c := threeVoters()
	var ids []uint64
	for _, m := range c.Voters() {
		ids = append(ids, m.ID)
	}
	if len(ids) != 3 || ids[0] != 1 || ids[1] != 2 || ids[2] != 3 {
		t.Errorf("Voters() = %v, want [1 2 3] (no learner)", ids)
	}
	for _, tc := range []struct {
		healthy []uint64
		n       int
		quorum  bool
	}{
		{nil, 0, false},
		{[]uint64{2}, 1, false},
		{[]uint64{1, 3}, 2, true},
		{[]uint64{1, 2, 3}, 3, true},
	} {
		c := threeVoters(tc.healthy...)
		if got := c.HealthyVoters(); got != tc.n {
			t.Errorf("healthy %v: HealthyVoters() = %d, want %d (the learner does not count)", tc.healthy, got, tc.n)
		}
		if got := c.HasQuorum(); got != tc.quorum {
			t.Errorf("healthy %v: HasQuorum() = %v", tc.healthy, got)
		}
	}
	// An answer that is not healthy does not count.
	c = threeVoters(1)
	c.Status[2] = etcdclient.MemberStatus{MemberID: 2, Healthy: false, Error: "context deadline exceeded"}
	if c.HealthyVoters() != 1 || c.HasQuorum() || !c.Healthy(1) || c.Healthy(2) || c.Healthy(3) {
		t.Errorf("unhealthy answer counted: %d", c.HealthyVoters())
	}
	// Only learners: no voters, no quorum.
	learners := &facts.Cluster{Members: []etcdclient.Member{{ID: 9, Learner: true}}, Status: map[uint64]etcdclient.MemberStatus{9: {MemberID: 9, Healthy: true}}}
	if learners.Voters() != nil || learners.HasQuorum() {
		t.Errorf("learners only: voters %v, quorum %v", learners.Voters(), learners.HasQuorum())
	}
}

func TestQuorum(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 2, 3: 2, 4: 3, 5: 3} {
		if got := facts.Quorum(n); got != want {
			t.Errorf("Quorum(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestClusterUnknown(t *testing.T) {
	var nilCluster *facts.Cluster
	if nilCluster.Known() || (&facts.Cluster{}).Known() {
		t.Errorf("Known() true without a member list")
	}
	if !(&facts.Cluster{Members: []etcdclient.Member{}}).Known() {
		t.Errorf("an empty but given member list is known")
	}
	if nilCluster.Leader() != 0 || (&facts.Cluster{}).Leader() != 0 {
		t.Errorf("Leader() of nothing")
	}
	if (&facts.Cluster{LeaderID: 7}).Leader() != 7 {
		t.Errorf("Leader()")
	}
	if _, ok := nilCluster.Member("a", "https://x:2380"); ok {
		t.Errorf("nil Member found")
	}
	if _, ok := nilCluster.MemberByID(1); ok {
		t.Errorf("nil MemberByID found")
	}
	if nilCluster.Voters() != nil || nilCluster.HealthyVoters() != 0 || nilCluster.HasQuorum() || nilCluster.Healthy(1) {
		t.Errorf("nil cluster has voters or quorum")
	}
	empty := &facts.Cluster{}
	if empty.HasQuorum() || empty.HealthyVoters() != 0 || empty.Healthy(1) {
		t.Errorf("empty cluster has quorum")
	}
}
