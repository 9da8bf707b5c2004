package etcdclient_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
)

func TestMemberList(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	cli := c.client(t, nil)
	dead := "https://" + freeAddr(t)
	urls := append([]string{dead}, c.urls()...)

	for _, serializable := range []bool{false, true} {
		list, err := cli.MemberListOf(t.Context(), urls, 500*time.Millisecond, serializable)
		if err != nil {
			t.Fatalf("serializable %v: %v", serializable, err)
		}
		if list.From != c.members[0].clientURL || list.Serializable != serializable {
			t.Errorf("serializable %v: from %s, serializable %v", serializable, list.From, list.Serializable)
		}
		checkMembers(t, list.Members, c.members...)
	}

	// Without quorum only a serializable list comes back, from the member
	// still running.
	stopMembers(c.members[0], c.members[1])
	urls = []string{c.members[1].clientURL, c.members[2].clientURL}
	list, err := cli.MemberList(t.Context(), urls, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if !list.Serializable || list.From != c.members[2].clientURL {
		t.Errorf("without quorum: from %s, serializable %v", list.From, list.Serializable)
	}
	checkMembers(t, list.Members, c.members...)
	_, err = cli.MemberListOf(t.Context(), urls, 300*time.Millisecond, false)
	if err == nil || !strings.Contains(err.Error(), "no member answered the member list") || !strings.Contains(err.Error(), c.members[2].clientURL+": no answer in time") {
		t.Errorf("linearizable list without quorum: %v", err)
	}
	if _, err := cli.MemberList(t.Context(), []string{dead}, 300*time.Millisecond); err == nil {
		t.Error("member list from a dead member only succeeded")
	}
}

// checkMembers checks that ms are the running members want, by ID, name and
// URLs.
func checkMembers(t *testing.T, ms []etcdclient.Member, want ...*testMember) {
	t.Helper()
	if len(ms) != len(want) {
		t.Errorf("%d members, want %d: %+v", len(ms), len(want), ms)
		return
	}
	for _, w := range want {
		i := slices.IndexFunc(ms, func(m etcdclient.Member) bool { return m.ID == w.id() })
		if i < 0 {
			t.Errorf("%s (%x) is not in %+v", w.name, w.id(), ms)
			continue
		}
		m := ms[i]
		if m.Name != w.name || !slices.Equal(m.PeerURLs, []string{w.peerURL}) || !slices.Equal(m.ClientURLs, []string{w.clientURL}) ||
			!m.Started() || !m.HasPeerURL(w.peerURL) || m.HexID() != etcdclient.FormatID(w.id()) {
			t.Errorf("%s: %+v", w.name, m)
		}
	}
}

// TestLearnerLifecycle adds a member as a learner, starts it, promotes it
// once it caught up and removes it, as a member's replacement does.
func TestLearnerLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("etcd refuses a member add for five seconds after it started")
	}
	t.Parallel()
	c := startCluster(t, 3)
	cli := c.client(t, nil)
	voters := c.urls()
	m3 := c.newMember(t, "m3")

	start := time.Now()
	learner, ms, err := cli.AddLearner(t.Context(), voters, m3.peerURL, time.Second, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("learner added after %s", time.Since(start).Round(time.Millisecond))
	if !learner.Learner || learner.Started() || !learner.HasPeerURL(m3.peerURL) || len(ms) != 4 {
		t.Errorf("learner %+v in %+v", learner, ms)
	}
	again, _, err := cli.AddLearner(t.Context(), voters, m3.peerURL, time.Second, time.Second)
	if err != nil || again.ID != learner.ID {
		t.Errorf("a second add of the same peer URL: %+v, %v; want %x", again, err, learner.ID)
	}

	ic := etcdclient.InitialCluster(ms, m3.name, m3.peerURL)
	for _, m := range c.members {
		if !strings.Contains(ic, m.name+"="+m.peerURL) {
			t.Errorf("initial cluster %q lacks %s", ic, m.name)
		}
	}
	c.join(t, m3)
	if m3.id() != learner.ID {
		t.Fatalf("started member %x, added %x", m3.id(), learner.ID)
	}
	st := cli.Status(t.Context(), []etcdclient.Endpoint{m3.endpoint()}, 2*time.Second)[0]
	if !st.Learner || !st.Healthy || st.Leader {
		t.Errorf("learner status %+v", st)
	}

	if err := cli.Promote(t.Context(), voters, learner.ID, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	list, err := cli.MemberList(t.Context(), voters, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	checkMembers(t, list.Members, c.members...)
	for _, m := range list.Members {
		if m.Learner {
			t.Errorf("%s is still a learner", m.Name)
		}
	}
	if err := cli.Promote(t.Context(), voters, learner.ID, time.Second); err != nil {
		t.Errorf("promoting a voter: %v", err)
	}
	if err := cli.Promote(t.Context(), voters, 42, time.Second); !errors.Is(err, rpctypes.ErrMemberNotFound) {
		t.Errorf("promoting an unknown member: %v", err)
	}

	if err := cli.Remove(t.Context(), voters, learner.ID, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	list, err = cli.MemberList(t.Context(), voters, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	checkMembers(t, list.Members, c.members[:3]...)
	if err := cli.Remove(t.Context(), voters, learner.ID, time.Second); err != nil {
		t.Errorf("removing a member already gone: %v", err)
	}
}

func TestMoveLeaderAway(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	cli := c.client(t, nil)
	leader := c.leader(t)
	follower := c.follower(t)
	if err := cli.MoveLeaderAway(t.Context(), c.urls(), etcdclient.FormatID(follower.id())); err != nil {
		t.Fatal(err)
	}
	if now := c.leader(t); now != leader {
		t.Errorf("moving leadership from a follower moved it from %s to %s", leader.name, now.name)
	}
	if err := cli.MoveLeaderAway(t.Context(), c.urls(), etcdclient.FormatID(leader.id())); err != nil {
		t.Fatal(err)
	}
	if now := c.leader(t); now == leader {
		t.Errorf("%s still leads", leader.name)
	}
}

func TestMoveLeaderAwayAlone(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1)
	cli := c.client(t, nil)
	err := cli.MoveLeaderAway(t.Context(), c.urls(), etcdclient.FormatID(c.members[0].id()))
	if err == nil || !strings.Contains(err.Error(), "no other healthy voting member") {
		t.Errorf("moving leadership away from the only member: %v", err)
	}
}

func TestInitialCluster(t *testing.T) {
	a := etcdclient.Member{ID: 0xa, Name: "a", PeerURLs: []string{"https://10.0.0.1:2380"}}
	b := etcdclient.Member{ID: 0xb, Name: "b", PeerURLs: []string{"https://10.0.0.2:2380", "https://[fd00::2]:2380"}}
	added := etcdclient.Member{ID: 0xc0ffee, PeerURLs: []string{"https://10.0.0.3:2380"}}
	noURL := etcdclient.Member{ID: 0xd, Name: "d"}
	other := etcdclient.Member{ID: 0xe, Name: "o", PeerURLs: []string{"https://10.0.0.1:23800"}}
	for _, tc := range []struct {
		name    string
		ms      []etcdclient.Member
		self    string
		selfURL string
		want    string
	}{
		{"no members", nil, "c", "https://10.0.0.3:2380", "c=https://10.0.0.3:2380"},
		{"self added by peer URL", []etcdclient.Member{a, b, added}, "c", "https://10.0.0.3:2380",
			"a=https://10.0.0.1:2380,b=https://10.0.0.2:2380,c=https://10.0.0.3:2380"},
		{"self missing", []etcdclient.Member{a, b}, "c", "https://10.0.0.3:2380",
			"a=https://10.0.0.1:2380,b=https://10.0.0.2:2380,c=https://10.0.0.3:2380"},
		{"another added member by hex ID", []etcdclient.Member{a, added}, "e", "https://10.0.0.5:2380",
			"a=https://10.0.0.1:2380,c0ffee=https://10.0.0.3:2380,e=https://10.0.0.5:2380"},
		{"member without peer URL", []etcdclient.Member{a, noURL}, "c", "https://10.0.0.3:2380",
			"a=https://10.0.0.1:2380,c=https://10.0.0.3:2380"},
		// Two members on one host: a peer URL that begins with self's is
		// another member's.
		{"self's peer URL a prefix of another's", []etcdclient.Member{other}, "c", "https://10.0.0.1:2380",
			"o=https://10.0.0.1:23800,c=https://10.0.0.1:2380"},
		{"self's peer URL second of its entry", []etcdclient.Member{b}, "b", "https://[fd00::2]:2380",
			"b=https://10.0.0.2:2380,b=https://[fd00::2]:2380"},
	} {
		if got := etcdclient.InitialCluster(tc.ms, tc.self, tc.selfURL); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
