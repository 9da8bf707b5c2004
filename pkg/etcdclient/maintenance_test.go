package etcdclient_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/etcdadm-io/etcdadm/internal/etcdtest"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
)

// TestNoSpaceAlarm fills a member's database to its quota, then recovers
// it as an operator does: compact, defragment, disarm.
func TestNoSpaceAlarm(t *testing.T) {
	t.Parallel()
	const quota = 2 << 20
	c := etcdtest.Start(t, 1, func(cfg *embed.Config) { cfg.QuotaBackendBytes = quota })
	m := c.Members[0]
	cli := c.Client(t, nil)
	kv, err := cli.Connect(m.ClientURL)
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()

	// etcd checks the quota against the size of its last commit to disk,
	// every 100ms: a burst of writes goes well past it.
	value := strings.Repeat("x", 64<<10)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if _, err = kv.Put(t.Context(), "big", value); err != nil {
			break
		}
	}
	if !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("writing past the quota: %v", err)
	}

	st := cli.Status(t.Context(), c.Endpoints(), 2*time.Second)[0]
	if !st.Healthy || st.Error != "" || !slices.Equal(st.Alarms, []string{"NOSPACE"}) {
		t.Errorf("status under NOSPACE: %+v", st)
	}
	if st.DBSize < quota/2 || st.DBSizeInUse == 0 || st.DBSizeInUse > st.DBSize || st.DBSizeQuota != quota || st.RaftAppliedIndex == 0 || st.RaftAppliedIndex > st.RaftIndex {
		t.Errorf("sizes and indexes: %+v", st)
	}
	alarms, err := cli.AlarmList(t.Context(), c.URLs(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := etcdclient.Alarm{MemberID: m.ID(), Member: m.Name, Type: "NOSPACE"}
	if !slices.Equal(alarms, []etcdclient.Alarm{want}) {
		t.Errorf("alarms %+v, want %+v", alarms, want)
	}
	if _, err := kv.Put(t.Context(), "small", "v"); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Errorf("a small write under NOSPACE: %v", err)
	}

	// Disarmed first, the alarm comes back with the next write.
	if err := cli.AlarmDisarm(t.Context(), c.URLs(), want, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "small", "v"); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Errorf("a write over the quota after disarming: %v", err)
	}

	rev, err := cli.Revision(t.Context(), c.URLs(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Compact(t.Context(), c.URLs(), rev, true, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := cli.Compact(t.Context(), c.URLs(), rev, true, time.Second); err != nil {
		t.Errorf("compacting to a compacted revision: %v", err)
	}
	if err := cli.Defragment(t.Context(), m.ClientURL, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	after := cli.Status(t.Context(), c.Endpoints(), 2*time.Second)[0]
	if after.DBSize > quota/4 {
		t.Errorf("database of %d bytes after compaction and defragment, %d before", after.DBSize, st.DBSize)
	}
	if err := cli.AlarmDisarm(t.Context(), c.URLs(), want, time.Second); err != nil {
		t.Fatal(err)
	}
	if alarms, err := cli.AlarmList(t.Context(), c.URLs(), time.Second); err != nil || len(alarms) != 0 {
		t.Errorf("alarms after disarming: %v, %v", alarms, err)
	}
	if _, err := kv.Put(t.Context(), "small", "v"); err != nil {
		t.Errorf("a write after recovery: %v", err)
	}
	if st := cli.Status(t.Context(), c.Endpoints(), 2*time.Second)[0]; !st.Healthy || len(st.Alarms) != 0 {
		t.Errorf("status after recovery: %+v", st)
	}
	if err := cli.AlarmDisarm(t.Context(), c.URLs(), want, time.Second); err != nil {
		t.Errorf("disarming an alarm no longer active: %v", err)
	}
}

func TestAlarmDisarmNamesOneAlarm(t *testing.T) {
	cli := etcdclient.New(nil, nil)
	defer cli.Close()
	for _, a := range []etcdclient.Alarm{
		{Type: "NOSPACE"},
		{MemberID: 1, Type: "NONE"},
		{MemberID: 1, Type: "nospace"},
		{MemberID: 1},
	} {
		// No endpoint is needed to refuse these: none is dialled.
		err := cli.AlarmDisarm(t.Context(), []string{"https://127.0.0.1:1"}, a, time.Second)
		if err == nil || !strings.Contains(err.Error(), "name one member and one alarm type") {
			t.Errorf("%+v: %v", a, err)
		}
	}
}

func TestAlarmListWithoutQuorum(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 3)
	cli := c.Client(t, nil)
	if alarms, err := cli.AlarmList(t.Context(), c.URLs(), time.Second); err != nil || len(alarms) != 0 {
		t.Fatalf("alarms of a healthy cluster: %v, %v", alarms, err)
	}
	etcdtest.StopMembers(c.Members[0], c.Members[1])
	_, err := cli.AlarmList(t.Context(), c.URLs()[2:], 300*time.Millisecond)
	if err == nil || !strings.HasPrefix(err.Error(), "list alarms: "+c.Members[2].ClientURL+": ") {
		t.Errorf("alarms without quorum: %v", err)
	}
	// The member left alone gives up its leader after an election timeout.
	var st etcdclient.MemberStatus
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		st = cli.Status(t.Context(), c.Endpoints()[2:], time.Second)[0]
		if st.LeaderID == 0 {
			break
		}
	}
	if st.Healthy || st.Error != "no leader: the member cannot reach a quorum of its peers" || !st.Answered() || len(st.Alarms) != 0 {
		t.Errorf("status without quorum: %+v", st)
	}
}

// TestCorruptAlarm raises CORRUPT as etcd's corruption check does: the
// data cannot be trusted, so no member is healthy.
func TestCorruptAlarm(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 1)
	m := c.Members[0]
	cli := c.Client(t, nil)
	raw, err := cli.Connect(m.ClientURL)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	req := &etcdserverpb.AlarmRequest{Action: etcdserverpb.AlarmRequest_ACTIVATE, MemberID: m.ID(), Alarm: etcdserverpb.AlarmType_CORRUPT}
	if _, err := etcdserverpb.NewMaintenanceClient(raw.ActiveConnection()).Alarm(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	st := cli.Status(t.Context(), c.Endpoints(), time.Second)[0]
	if st.Healthy || !slices.Equal(st.Alarms, []string{"CORRUPT"}) || !strings.HasPrefix(st.Error, "active alarm CORRUPT: ") {
		t.Errorf("status under CORRUPT: %+v", st)
	}
	if _, err := raw.Put(t.Context(), "k", "v"); !errors.Is(err, rpctypes.ErrCorrupt) {
		t.Errorf("a write under CORRUPT: %v", err)
	}
	alarms, err := cli.AlarmList(t.Context(), c.URLs(), time.Second)
	want := []etcdclient.Alarm{{MemberID: m.ID(), Member: m.Name, Type: "CORRUPT"}}
	if err != nil || !slices.Equal(alarms, want) {
		t.Errorf("alarms %+v, %v; want %+v", alarms, err, want)
	}
	if err := cli.AlarmDisarm(t.Context(), c.URLs(), want[0], time.Second); err != nil {
		t.Fatal(err)
	}
	if st := cli.Status(t.Context(), c.Endpoints(), time.Second)[0]; !st.Healthy || len(st.Alarms) != 0 {
		t.Errorf("status after disarming: %+v", st)
	}
}

// TestCompactDefragment checks that a compaction to the current revision,
// then a defragment of each member, gives back the space of deleted keys.
func TestCompactDefragment(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 3)
	cli := c.Client(t, nil)
	kv, err := cli.Connect(c.URLs()...)
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	value := strings.Repeat("x", 4<<10)
	for b := range 8 {
		var ops []clientv3.Op
		for i := range 100 {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("k/%d/%d", b, i), value))
		}
		if _, err := kv.Txn(t.Context()).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := kv.Delete(t.Context(), "k/", clientv3.WithPrefix())
	if err != nil || resp.Deleted != 800 {
		t.Fatalf("delete: %v, %v", resp, err)
	}
	rev := resp.Header.Revision
	// Followers apply the writes, and commit them to their database, a
	// moment later.
	var full []etcdclient.MemberStatus
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		full = cli.Status(t.Context(), c.Endpoints(), 2*time.Second)
		if !slices.ContainsFunc(full, func(st etcdclient.MemberStatus) bool { return st.DBSize < 3<<20 }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("databases before compaction: %+v", full)
		}
	}

	if err := cli.Compact(t.Context(), c.URLs(), rev+1, false, time.Second); err == nil || !errors.Is(err, rpctypes.ErrFutureRev) ||
		strings.Contains(err.Error(), c.Members[1].ClientURL) {
		t.Errorf("compacting to a future revision: %v (one member's refusal is enough)", err)
	}
	if err := cli.Compact(t.Context(), c.URLs(), rev, true, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	for i, m := range c.Members {
		// A follower compacts its database in the background: defragment
		// until it did.
		var st etcdclient.MemberStatus
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			if err := cli.Defragment(t.Context(), m.ClientURL, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			st = cli.Status(t.Context(), []etcdclient.Endpoint{m.Endpoint()}, 2*time.Second)[0]
			if st.DBSize < full[i].DBSize/4 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if st.DBSize >= full[i].DBSize/4 || !st.Healthy {
			t.Errorf("%s: %d bytes after defragment, %d before: %+v", m.Name, st.DBSize, full[i].DBSize, st)
		}
	}

	dead := "https://" + etcdtest.FreeAddr(t)
	start := time.Now()
	err = cli.Defragment(t.Context(), dead, time.Minute)
	if err == nil || !strings.HasPrefix(err.Error(), "defragment "+dead+": not reachable") || time.Since(start) > 2*time.Second {
		t.Errorf("defragment of a member that is down: %v after %s", err, time.Since(start))
	}
}

func TestMoveLeader(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 3)
	cli := c.Client(t, nil)
	leader := c.Leader(t)
	to := c.Follower(t)
	if err := cli.MoveLeader(t.Context(), c.URLs(), to.ID(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if now := c.Leader(t); now != to {
		t.Fatalf("%s leads, want %s", now.Name, to.Name)
	}
	if err := cli.MoveLeader(t.Context(), c.URLs(), to.ID(), time.Second); err != nil {
		t.Errorf("moving leadership to the leader: %v", err)
	}
	err := cli.MoveLeader(t.Context(), c.URLs(), 42, time.Second)
	if err == nil || !errors.Is(err, rpctypes.ErrBadLeaderTransferee) || !strings.Contains(err.Error(), "to 2a") {
		t.Errorf("moving leadership to an unknown member: %v", err)
	}
	var others []string
	for _, m := range c.Members {
		if m != to {
			others = append(others, m.ClientURL)
		}
	}
	err = cli.MoveLeader(t.Context(), others, leader.ID(), time.Second)
	if err == nil || !strings.Contains(err.Error(), "the leader "+etcdclient.FormatID(to.ID())+" is not among the endpoints") {
		t.Errorf("moving leadership without the leader's endpoint: %v", err)
	}
	err = cli.MoveLeaderAway(t.Context(), others, etcdclient.FormatID(to.ID()))
	if err == nil || !strings.Contains(err.Error(), "not among the endpoints") {
		t.Errorf("moving leadership away without the leader's endpoint: %v", err)
	}
	dead := "https://" + etcdtest.FreeAddr(t)
	if err := cli.MoveLeader(t.Context(), []string{dead}, to.ID(), time.Second); err == nil || !strings.Contains(err.Error(), "no leader") {
		t.Errorf("moving leadership with no member answering: %v", err)
	}
}

func TestMemberUpdate(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 3)
	cli := c.Client(t, nil)
	m := c.Members[1]
	extra := "https://" + etcdtest.FreeAddr(t)
	peers := func() []string {
		t.Helper()
		list, err := cli.MemberList(t.Context(), c.URLs(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range list.Members {
			if x.ID == m.ID() {
				return x.PeerURLs
			}
		}
		t.Fatalf("%s is not in the list", m.Name)
		return nil
	}
	if err := cli.MemberUpdate(t.Context(), c.URLs(), m.ID(), []string{m.PeerURL, extra}, time.Second); err != nil {
		t.Fatal(err)
	}
	if got := peers(); !slices.Equal(got, []string{m.PeerURL, extra}) {
		t.Errorf("peer URLs %v after the update", got)
	}
	if err := cli.MemberUpdate(t.Context(), c.URLs(), m.ID(), []string{m.PeerURL}, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := cli.MemberUpdate(t.Context(), c.URLs(), m.ID(), []string{m.PeerURL}, time.Second); err != nil {
		t.Errorf("setting the peer URLs a member has: %v", err)
	}
	if got := peers(); !slices.Equal(got, []string{m.PeerURL}) {
		t.Errorf("peer URLs %v after the update back", got)
	}
	err := cli.MemberUpdate(t.Context(), c.URLs(), 42, []string{extra}, time.Second)
	if !errors.Is(err, rpctypes.ErrMemberNotFound) || !strings.Contains(err.Error(), "member 2a") {
		t.Errorf("updating an unknown member: %v", err)
	}
	err = cli.MemberUpdate(t.Context(), c.URLs(), m.ID(), []string{c.Members[0].PeerURL}, time.Second)
	if !errors.Is(err, rpctypes.ErrPeerURLExist) {
		t.Errorf("taking another member's peer URL: %v", err)
	}
}
