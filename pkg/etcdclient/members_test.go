package etcdclient_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/etcdadm-io/etcdadm/internal/etcdtest"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
)

func TestMemberList(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 3)
	cli := c.Client(t, nil)
	dead := "https://" + etcdtest.FreeAddr(t)
	urls := append([]string{dead}, c.URLs()...)

	for _, serializable := range []bool{false, true} {
		list, err := cli.MemberListOf(t.Context(), urls, 500*time.Millisecond, serializable)
		if err != nil {
			t.Fatalf("serializable %v: %v", serializable, err)
		}
		if list.From != c.Members[0].ClientURL || list.Serializable != serializable {
			t.Errorf("serializable %v: from %s, serializable %v", serializable, list.From, list.Serializable)
		}
		checkMembers(t, list.Members, c.Members...)
	}

	// Without quorum only a serializable list comes back, from the member
	// still running.
	etcdtest.StopMembers(c.Members[0], c.Members[1])
	urls = []string{c.Members[1].ClientURL, c.Members[2].ClientURL}
	list, err := cli.MemberList(t.Context(), urls, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if !list.Serializable || list.From != c.Members[2].ClientURL {
		t.Errorf("without quorum: from %s, serializable %v", list.From, list.Serializable)
	}
	checkMembers(t, list.Members, c.Members...)
	_, err = cli.MemberListOf(t.Context(), urls, 300*time.Millisecond, false)
	if err == nil || !strings.Contains(err.Error(), "no member answered the member list") || !strings.Contains(err.Error(), c.Members[2].ClientURL+": no answer in time") {
		t.Errorf("linearizable list without quorum: %v", err)
	}
	if _, err := cli.MemberList(t.Context(), []string{dead}, 300*time.Millisecond); err == nil {
		t.Error("member list from a dead member only succeeded")
	}
}

// checkMembers checks that ms are the running members want, by ID, name and
// URLs.
func checkMembers(t *testing.T, ms []etcdclient.Member, want ...*etcdtest.Member) {
	t.Helper()
	if len(ms) != len(want) {
		t.Errorf("%d members, want %d: %+v", len(ms), len(want), ms)
		return
	}
	for _, w := range want {
		i := slices.IndexFunc(ms, func(m etcdclient.Member) bool { return m.ID == w.ID() })
		if i < 0 {
			t.Errorf("%s (%x) is not in %+v", w.Name, w.ID(), ms)
			continue
		}
		m := ms[i]
		if m.Name != w.Name || !slices.Equal(m.PeerURLs, []string{w.PeerURL}) || !slices.Equal(m.ClientURLs, []string{w.ClientURL}) ||
			!m.Started() || !m.HasPeerURL(w.PeerURL) || m.HexID() != etcdclient.FormatID(w.ID()) {
			t.Errorf("%s: %+v", w.Name, m)
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
	c := etcdtest.Start(t, 3)
	cli := c.Client(t, nil)
	voters := c.URLs()
	m3 := c.NewMember(t, "m3")

	start := time.Now()
	learner, ms, err := cli.AddLearner(t.Context(), voters, m3.PeerURL, time.Second, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("learner added after %s", time.Since(start).Round(time.Millisecond))
	if !learner.Learner || learner.Started() || !learner.HasPeerURL(m3.PeerURL) || len(ms) != 4 {
		t.Errorf("learner %+v in %+v", learner, ms)
	}
	again, _, err := cli.AddLearner(t.Context(), voters, m3.PeerURL, time.Second, time.Second)
	if err != nil || again.ID != learner.ID {
		t.Errorf("a second add of the same peer URL: %+v, %v; want %x", again, err, learner.ID)
	}

	ic := etcdclient.InitialCluster(ms, m3.Name, m3.PeerURL)
	for _, m := range c.Members {
		if !strings.Contains(ic, m.Name+"="+m.PeerURL) {
			t.Errorf("initial cluster %q lacks %s", ic, m.Name)
		}
	}
	c.Join(t, m3)
	if m3.ID() != learner.ID {
		t.Fatalf("started member %x, added %x", m3.ID(), learner.ID)
	}
	st := cli.Status(t.Context(), []etcdclient.Endpoint{m3.Endpoint()}, 2*time.Second)[0]
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
	checkMembers(t, list.Members, c.Members...)
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
	checkMembers(t, list.Members, c.Members[:3]...)
	if err := cli.Remove(t.Context(), voters, learner.ID, time.Second); err != nil {
		t.Errorf("removing a member already gone: %v", err)
	}
}

func TestMoveLeaderAway(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 3)
	cli := c.Client(t, nil)
	leader := c.Leader(t)
	follower := c.Follower(t)
	if err := cli.MoveLeaderAway(t.Context(), c.URLs(), etcdclient.FormatID(follower.ID())); err != nil {
		t.Fatal(err)
	}
	if now := c.Leader(t); now != leader {
		t.Errorf("moving leadership from a follower moved it from %s to %s", leader.Name, now.Name)
	}
	if err := cli.MoveLeaderAway(t.Context(), c.URLs(), etcdclient.FormatID(leader.ID())); err != nil {
		t.Fatal(err)
	}
	if now := c.Leader(t); now == leader {
		t.Errorf("%s still leads", leader.Name)
	}
}

func TestMoveLeaderAwayAlone(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 1)
	cli := c.Client(t, nil)
	err := cli.MoveLeaderAway(t.Context(), c.URLs(), etcdclient.FormatID(c.Members[0].ID()))
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
