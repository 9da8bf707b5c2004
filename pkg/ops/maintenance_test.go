package ops_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/etcdadm-io/etcdadm/internal/etcdtest"
	"github.com/etcdadm-io/etcdadm/internal/opstest"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
)

// maintained is an embedded cluster as an inventory, and an Env for each
// of its members' operations, logging to log.
type maintained struct {
	c   *etcdtest.Cluster
	inv *config.Cluster
	cli *etcdclient.Client
	log bytes.Buffer
}

func maintain(t *testing.T, n int, configure ...func(*embed.Config)) *maintained {
	t.Helper()
	m := &maintained{c: etcdtest.Start(t, n, configure...)}
	m.inv = &config.Cluster{Spec: config.Spec{Hosts: m.c.Hosts()}}
	m.cli = m.c.Client(t, m.c.Dialer())
	return m
}

// env runs operations for the member at index i, or for this machine.
func (m *maintained) env(i int) *opstest.Env {
	e := &opstest.Env{C: m.inv, Client: m.cli, L: progress.NewLog(progress.New(&m.log, nil)), Health: 20 * time.Second}
	if i >= 0 {
		e.H = m.inv.Spec.Hosts[i]
	} else {
		e.H.Name = ops.LocalHost
	}
	return e
}

func (m *maintained) status(t *testing.T, i int) etcdclient.MemberStatus {
	t.Helper()
	return m.cli.Status(t.Context(), []etcdclient.Endpoint{ops.Endpoints(m.inv)[i]}, 2*time.Second)[0]
}

// fill writes n keys of size bytes under prefix.
func fill(t *testing.T, kv *clientv3.Client, prefix string, n, size int) error {
	t.Helper()
	value := strings.Repeat("x", size)
	for i := range n {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		_, err := kv.Put(ctx, fmt.Sprintf("%s%06d", prefix, i), value)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// The history compacted, the followers defragmented, the leader refused
// while it leads, then defragmented once its leadership moved: every
// database gives its free space back.
func TestCompactDefragmentMoveLeader(t *testing.T) {
	t.Parallel()
	m := maintain(t, 3)
	kv, err := m.cli.Connect(ops.ClientURLs(m.inv)...)
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	if err := fill(t, kv, "k/", 600, 4<<10); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Delete(t.Context(), "k/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	if err := ops.Execute(t.Context(), m.env(-1), ops.Compact{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.log.String(), "compacted the history up to revision") {
		t.Errorf("log:\n%s", m.log.String())
	}
	before := map[int]int64{}
	leader := -1
	for i, mem := range m.c.Members {
		if mem.Leads() {
			leader = i
		}
		before[i] = m.status(t, i).DBSize
	}
	// A follower removes the compacted revisions in the background, a
	// moment after the member that took the compaction: defragment again
	// until it gave the space back.
	defragment := func(i int) {
		t.Helper()
		waitFor(t, m.c.Members[i].Name+" defragmented", func() bool {
			if err := ops.Execute(t.Context(), m.env(i), ops.Defragment{Member: m.c.Members[i].Name}); err != nil {
				t.Fatal(err)
			}
			return m.status(t, i).DBSize < before[i]/2
		})
	}
	// Refused: the leader's database keeps its size (give or take the
	// pages the cluster's own writes add), far from a defragmented one's.
	err = ops.Execute(t.Context(), m.env(leader), ops.Defragment{Member: m.c.Members[leader].Name})
	if size := m.status(t, leader).DBSize; err == nil || !strings.Contains(err.Error(), "leads now") || size < before[leader]/2 {
		t.Fatalf("defragment of the leader: %v (database %d bytes, %d before)", err, size, before[leader])
	}
	var last int
	for i := range m.c.Members {
		if i == leader {
			continue
		}
		defragment(i)
		last = i
	}
	to := m.c.Members[last]
	if err := ops.Execute(t.Context(), m.env(-1), ops.MoveLeaderTo{Member: to.Name, MemberID: etcdclient.FormatID(to.ID())}); err != nil {
		t.Fatal(err)
	}
	if !to.Leads() {
		t.Fatalf("%s does not lead", to.Name)
	}
	defragment(leader)
	for i, mem := range m.c.Members {
		if st := m.status(t, i); st.DBSize > before[i]/2 || !st.Healthy {
			t.Errorf("%s: database of %d bytes, %d before: %+v", mem.Name, st.DBSize, before[i], st)
		}
	}
	for _, want := range []string{"defragmenting its database", "healthy and caught up", "MiB before, ", "leads now (leadership moved in"} {
		if !strings.Contains(m.log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, m.log.String())
		}
	}
}

// NOSPACE is not disarmed while the database is over its quota (with
// room to write); once compacted and defragmented it is, and writes work.
func TestDisarmNoSpaceUnderQuota(t *testing.T) {
	t.Parallel()
	m := maintain(t, 1, func(cfg *embed.Config) { cfg.QuotaBackendBytes = 2 << 20 })
	kv, err := m.cli.Connect(ops.ClientURLs(m.inv)...)
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	// The quota is checked against the backend's size as of its last
	// commit (every 100 ms), so puts faster than that can run past it
	// before the first refusal: write until refused, up to 64 MiB.
	if err := fill(t, kv, "big/", 1024, 64<<10); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("filling the database: %v", err)
	}
	disarm := ops.DisarmAlarm{Member: "m0", MemberID: etcdclient.FormatID(m.c.Members[0].ID()), Type: "NOSPACE", UnderQuota: true}
	err = ops.Execute(t.Context(), m.env(-1), disarm)
	if err == nil || !strings.Contains(err.Error(), "NOSPACE of m0 not disarmed: m0's database is") || !strings.Contains(err.Error(), "over 90% of its quota of 2.0 MiB") {
		t.Fatalf("disarm over quota: %v", err)
	}
	if _, err := kv.Delete(t.Context(), "big/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	for _, op := range []ops.Op{ops.Compact{}, ops.Defragment{Member: "m0", Alone: true}} {
		if err := ops.Execute(t.Context(), m.env(0), op); err != nil {
			t.Fatal(err)
		}
	}
	if err := ops.Execute(t.Context(), m.env(-1), disarm); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "small", "v"); err != nil {
		t.Errorf("a write after disarming: %v", err)
	}
}

func TestOverQuota(t *testing.T) {
	c := &config.Cluster{}
	sts := []etcdclient.MemberStatus{
		{Name: "a", MemberID: 1, DBSize: 14 << 20, DBSizeQuota: 16 << 20},
		{Name: "b", MemberID: 2, DBSize: 15 << 20, DBSizeQuota: 16 << 20},
		{Name: "c", Error: "not reachable: connection refused"},
		// An etcd that reports no quota: the inventory's, else etcd's default.
		{Name: "d", MemberID: 4, DBSize: 3 << 30},
	}
	got := ops.OverQuota(c, sts)
	want := []string{
		"b's database is 15.0 MiB, 614.4 KiB over 90% of its quota of 16.0 MiB",
		"c did not answer (not reachable: connection refused), so its database size is unknown",
		"d's database is 3.00 GiB, 1.20 GiB over 90% of its quota of 2.00 GiB",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	c.Spec.Etcd.ExtraArgs = map[string]string{"quota-backend-bytes": "8589934592"}
	if got := ops.OverQuota(c, sts[3:]); len(got) != 0 {
		t.Errorf("under the inventory's quota: %v", got)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
