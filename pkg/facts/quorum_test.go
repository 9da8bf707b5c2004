package facts_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/etcdtest"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
)

// fakeEtcd answers GatherCluster from fixed statuses: reads[i] is the i-th
// round of Status calls (the last repeats), by member name.
type fakeEtcd struct {
	members []etcdclient.Member
	reads   []map[string]etcdclient.MemberStatus
	alarms  []etcdclient.Alarm
	// alarmErr fails the alarm list, as etcd does without quorum.
	alarmErr error

	statusCalls, alarmCalls int
}

func (f *fakeEtcd) Status(_ context.Context, eps []etcdclient.Endpoint, _ time.Duration) []etcdclient.MemberStatus {
	read := f.reads[min(f.statusCalls, len(f.reads)-1)]
	f.statusCalls++
	var out []etcdclient.MemberStatus
	for _, e := range eps {
		st := read[e.Name]
		st.Name, st.Endpoint = e.Name, e.ClientURL
		out = append(out, st)
	}
	return out
}

func (f *fakeEtcd) MemberList(_ context.Context, urls []string, _ time.Duration) (*etcdclient.MemberList, error) {
	return &etcdclient.MemberList{Members: f.members, From: urls[0]}, nil
}

func (f *fakeEtcd) MemberListOf(_ context.Context, urls []string, _ time.Duration, serializable bool) (*etcdclient.MemberList, error) {
	return &etcdclient.MemberList{Members: f.members, From: urls[0], Serializable: serializable}, nil
}

func (f *fakeEtcd) AlarmList(context.Context, []string, time.Duration) ([]etcdclient.Alarm, error) {
	f.alarmCalls++
	return f.alarms, f.alarmErr
}

var names3 = []string{"a", "b", "c"}

func newFake() *fakeEtcd {
	f := &fakeEtcd{}
	for i, n := range names3 {
		f.members = append(f.members, etcdclient.Member{ID: uint64(i + 1), Name: n, ClientURLs: []string{"https://" + n + ":2379"}})
	}
	return f
}

func endpoints3() []etcdclient.Endpoint {
	var out []etcdclient.Endpoint
	for _, n := range names3 {
		out = append(out, etcdclient.Endpoint{Name: n, ClientURL: "https://" + n + ":2379"})
	}
	return out
}

// Statuses as etcdclient makes them.
func healthy(id, leader uint64, alarms ...string) etcdclient.MemberStatus {
	return etcdclient.MemberStatus{MemberID: id, LeaderID: leader, Leader: id == leader, Healthy: true, Alarms: alarms}
}

func noLeader(id uint64) etcdclient.MemberStatus {
	return etcdclient.MemberStatus{MemberID: id, Error: "no leader: the member cannot reach a quorum of its peers"}
}

var (
	slow    = etcdclient.MemberStatus{Error: "no answer in time (member down, unreachable, or no quorum)", TimedOut: true}
	refused = etcdclient.MemberStatus{Error: "not reachable: connection refused", Refused: true}
)

const recheck = 50 * time.Millisecond

func gatherFake(f *fakeEtcd) *facts.Cluster {
	return facts.GatherCluster(context.Background(), f, endpoints3(), nil, 0, time.Second, recheck)
}

// An alarm on a cluster with its quorum is an alarm: the members are
// healthy (NOSPACE stops writes only), a leader is named, and the alarm
// list says which member raised it. One read is enough.
func TestGatherClusterAlarmOnAHealthyQuorum(t *testing.T) {
	f := newFake()
	f.reads = []map[string]etcdclient.MemberStatus{{"a": healthy(1, 1, "NOSPACE"), "b": healthy(2, 1, "NOSPACE"), "c": healthy(3, 1, "NOSPACE")}}
	f.alarms = []etcdclient.Alarm{{MemberID: 2, Member: "b", Type: "NOSPACE"}}
	c := gatherFake(f)
	if !c.HasQuorum() || c.QuorumLost || !c.LeaderSeen() || c.Leader() != 1 || f.statusCalls != 1 {
		t.Errorf("quorum %v, lost %v, leader %d, %d status reads: %+v", c.HasQuorum(), c.QuorumLost, c.Leader(), f.statusCalls, c)
	}
	if !slices.Equal(c.Alarms, f.alarms) || len(c.Alarmed("NOSPACE")) != 1 || len(c.Alarmed("CORRUPT")) != 0 {
		t.Errorf("alarms %+v", c.Alarms)
	}
	// Without an alarm in any status, the alarm list is not asked.
	f = newFake()
	f.reads = []map[string]etcdclient.MemberStatus{{"a": healthy(1, 1), "b": healthy(2, 1), "c": healthy(3, 1)}}
	if c := gatherFake(f); len(c.Alarms) != 0 || f.alarmCalls != 0 {
		t.Errorf("alarms %+v after %d alarm lists", c.Alarms, f.alarmCalls)
	}
	// A CORRUPT alarm makes every member unhealthy, but a leader is still
	// named: quorum is not lost, and the alarm is known.
	f = newFake()
	corrupt := func(id uint64) etcdclient.MemberStatus {
		st := healthy(id, 1, "CORRUPT")
		st.Healthy, st.Error = false, "active alarm CORRUPT: the cluster takes no writes until it is disarmed"
		return st
	}
	f.reads = []map[string]etcdclient.MemberStatus{{"a": corrupt(1), "b": corrupt(2), "c": corrupt(3)}}
	f.alarms = []etcdclient.Alarm{{MemberID: 3, Member: "c", Type: "CORRUPT"}}
	c = gatherFake(f)
	if c.HasQuorum() || c.QuorumLost || !c.LeaderSeen() || f.statusCalls != 1 || len(c.Alarmed("CORRUPT")) != 1 {
		t.Errorf("corrupt: quorum %v, lost %v, %d reads, alarms %+v", c.HasQuorum(), c.QuorumLost, f.statusCalls, c.Alarms)
	}
}

// Two members slow to answer, the third naming its leader: the cluster
// lacks healthy voters, but quorum is not lost, and the slow are named.
func TestGatherClusterSlowMembers(t *testing.T) {
	f := newFake()
	f.reads = []map[string]etcdclient.MemberStatus{{"a": healthy(1, 2), "b": slow, "c": slow}}
	c := gatherFake(f)
	if c.HasQuorum() || c.QuorumLost || f.statusCalls != 1 {
		t.Errorf("quorum %v, lost %v after %d reads", c.HasQuorum(), c.QuorumLost, f.statusCalls)
	}
	if got := c.Slow(); !slices.Equal(got, []string{"b", "c"}) {
		t.Errorf("slow %v", got)
	}
	// Status answered, but the read timed out: slow too, and its leader counts.
	f = newFake()
	late := etcdclient.MemberStatus{MemberID: 1, LeaderID: 2, Error: "no answer in time", TimedOut: true}
	f.reads = []map[string]etcdclient.MemberStatus{{"a": late, "b": slow, "c": refused}}
	if c := gatherFake(f); c.QuorumLost || !c.LeaderSeen() || f.statusCalls != 1 || !slices.Equal(c.Slow(), []string{"a", "b"}) {
		t.Errorf("lost %v, %d reads, slow %v", c.QuorumLost, f.statusCalls, c.Slow())
	}
}

// No leader named: the members are read again; only a second read without
// one confirms the loss, and only if those that did not answer could not
// hold a quorum of their own.
func TestGatherClusterConfirmsLostQuorum(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reads []map[string]etcdclient.MemberStatus
		lost  bool
		why   string
	}{
		{"an election under way", []map[string]etcdclient.MemberStatus{
			{"a": noLeader(1), "b": noLeader(2), "c": noLeader(3)},
			{"a": healthy(1, 2), "b": healthy(2, 2), "c": healthy(3, 2)},
		}, false, "an election was under way"},
		{"one member left, two down", []map[string]etcdclient.MemberStatus{
			{"a": noLeader(1), "b": refused, "c": refused},
		}, true, "no member named a leader in two reads 50ms apart (a answered without one)"},
		{"one member without a leader, two that took the connection but did not answer", []map[string]etcdclient.MemberStatus{
			{"a": noLeader(1), "b": slow, "c": slow},
		}, false, "b, c took the connection without answering: 2 of 3 voters, enough for a quorum of 2"},
		{"two without a leader, one slow", []map[string]etcdclient.MemberStatus{
			{"a": noLeader(1), "b": noLeader(2), "c": slow},
		}, true, "c did not answer, too few for a quorum of 2"},
		{"nothing takes a connection", []map[string]etcdclient.MemberStatus{
			{"a": refused, "b": refused, "c": refused},
		}, true, "no member runs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.reads = tc.reads
			start := time.Now()
			c := gatherFake(f)
			if f.statusCalls != 2 || time.Since(start) < recheck {
				t.Errorf("%d status reads in %s; want two, %s apart", f.statusCalls, time.Since(start), recheck)
			}
			if c.QuorumLost != tc.lost || !strings.Contains(c.QuorumWhy, tc.why) {
				t.Errorf("lost %v (%s), want %v (%s)", c.QuorumLost, c.QuorumWhy, tc.lost, tc.why)
			}
		})
	}
}

// Without a leader the alarm list cannot be read: the alarms come from the
// statuses, without the member that raised them.
func TestGatherClusterAlarmsWithoutQuorum(t *testing.T) {
	f := newFake()
	st := noLeader(1)
	st.Alarms = []string{"NOSPACE"}
	f.reads = []map[string]etcdclient.MemberStatus{{"a": st, "b": refused, "c": refused}}
	f.alarmErr = errors.New("no leader")
	c := gatherFake(f)
	if !c.QuorumLost || f.alarmCalls != 0 || !slices.Equal(c.Alarms, []etcdclient.Alarm{{Type: "NOSPACE"}}) {
		t.Errorf("lost %v, %d alarm lists, alarms %+v", c.QuorumLost, f.alarmCalls, c.Alarms)
	}
	// With a leader but the list failing, the same.
	f = newFake()
	f.reads = []map[string]etcdclient.MemberStatus{{"a": healthy(1, 1, "NOSPACE"), "b": healthy(2, 1, "NOSPACE"), "c": refused}}
	f.alarmErr = errors.New("deadline")
	if c := gatherFake(f); f.alarmCalls != 1 || !slices.Equal(c.Alarms, []etcdclient.Alarm{{Type: "NOSPACE"}}) {
		t.Errorf("%d alarm lists, alarms %+v", f.alarmCalls, c.Alarms)
	}
}

// A cancelled gather does not wait for the second read.
func TestGatherClusterCancelled(t *testing.T) {
	f := newFake()
	f.reads = []map[string]etcdclient.MemberStatus{{"a": noLeader(1), "b": refused, "c": refused}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := facts.GatherCluster(ctx, f, endpoints3(), nil, 0, time.Second, time.Hour)
	if f.statusCalls != 1 || c.QuorumLost {
		t.Errorf("%d reads, lost %v", f.statusCalls, c.QuorumLost)
	}
}

// Against etcd itself: three members read once; with two of them stopped,
// the one left loses its leader, and two reads confirm the loss.
func TestGatherClusterAgainstEtcd(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 3)
	cli := c.Client(t, nil)
	start := time.Now()
	e := facts.GatherCluster(t.Context(), cli, c.Endpoints(), nil, 0, time.Second, 2*time.Second)
	if !e.HasQuorum() || e.QuorumLost || !e.Known() || time.Since(start) > 2*time.Second {
		t.Fatalf("healthy cluster: quorum %v, lost %v, known %v, in %s", e.HasQuorum(), e.QuorumLost, e.Known(), time.Since(start))
	}
	etcdtest.StopMembers(c.Members[0], c.Members[1])
	// Right after, m2 may still name its leader: that read alone would
	// show a leader. Once an election timeout passed, it names none.
	for deadline := time.Now().Add(5 * time.Second); c.Members[2].Etcd.Server.Leader() != 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	e = facts.GatherCluster(t.Context(), cli, c.Endpoints(), nil, 0, time.Second, 2*time.Second)
	if !e.QuorumLost || !strings.Contains(e.QuorumWhy, "m2 answered without one") || !e.Serializable || len(e.Voters()) != 3 {
		t.Errorf("two of three stopped: lost %v (%s), serializable %v, voters %d", e.QuorumLost, e.QuorumWhy, e.Serializable, len(e.Voters()))
	}
}

// A member of another cluster answering at an inventory address is kept
// apart, however its leader goes: this cluster is the one the hosts' data
// holds, else the one most members name; its leader and quorum are
// judged without the stranger.
func TestGatherClusterKeepsAnotherClustersMemberApart(t *testing.T) {
	ours := func(st etcdclient.MemberStatus) etcdclient.MemberStatus { st.ClusterID = 0xc1; return st }
	stranger := healthy(9, 9)
	stranger.ClusterID = 0xc2
	f := newFake()
	f.reads = []map[string]etcdclient.MemberStatus{{"a": ours(healthy(1, 2)), "b": ours(healthy(2, 2)), "c": stranger}}
	for _, data := range []uint64{0, 0xc1} {
		c := facts.GatherCluster(context.Background(), f, endpoints3(), nil, data, time.Second, recheck)
		st, ok := c.At("https://c:2379")
		if c.ClusterID != 0xc1 || len(c.Status) != 2 || c.LeaderID != 2 || !ok || st.MemberID != 9 || c.Foreign["https://c:2379"].ClusterID != 0xc2 {
			t.Errorf("data %x: cluster %x, statuses %v, leader %d, foreign %v", data, c.ClusterID, c.Status, c.LeaderID, c.Foreign)
		}
	}
	// The hosts' data says which cluster this is, even when its members
	// are the fewer that answer.
	c := facts.GatherCluster(context.Background(), f, endpoints3(), nil, 0xc2, time.Second, recheck)
	if c.ClusterID != 0xc2 || len(c.Status) != 1 || len(c.Foreign) != 2 {
		t.Errorf("cluster %x, statuses %v, foreign %v", c.ClusterID, c.Status, c.Foreign)
	}
	// Without a leader among this cluster's members, the stranger's
	// leader does not count: the loss of quorum is judged on ours.
	f = newFake()
	f.reads = []map[string]etcdclient.MemberStatus{{"a": ours(noLeader(1)), "b": ours(noLeader(2)), "c": stranger}}
	c = facts.GatherCluster(context.Background(), f, endpoints3(), nil, 0xc1, time.Second, recheck)
	if !c.QuorumLost || f.statusCalls != 2 {
		t.Errorf("quorum lost %v (%s) after %d reads, want it confirmed by a second read", c.QuorumLost, c.QuorumWhy, f.statusCalls)
	}
}
