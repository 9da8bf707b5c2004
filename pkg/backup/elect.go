package backup

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The keys the members agree through, under /etcdadm/backup/<cluster>/:
// "run" names the member taking a backup, under its lease (it goes when
// the member's lease does, so a member that dies blocks nobody for longer
// than LeaseTTL); "last" names the last backup taken, and its period.
const (
	keyPrefix = "/etcdadm/backup/"
	// LeaseTTL is how long a member that stopped renewing its lease (a
	// dead one) keeps the others waiting.
	LeaseTTL = 15 * time.Second
)

func runKey(cluster string) string  { return keyPrefix + cluster + "/run" }
func lastKey(cluster string) string { return keyPrefix + cluster + "/last" }

// Claim is what the run key holds: who takes the backup.
type Claim struct {
	Member  string    `json:"member"`
	Period  time.Time `json:"period"`
	Started time.Time `json:"started"`
}

// Last is what the last key holds: the last backup taken.
type Last struct {
	Period   time.Time `json:"period"`
	Member   string    `json:"member"`
	Object   string    `json:"object"`
	Revision int64     `json:"revision"`
	At       time.Time `json:"at"`
}

// Turn is a member's turn to take the backup, held until Done or Release.
type Turn struct {
	cli     *clientv3.Client
	cluster string
	lease   clientv3.LeaseID
	rev     int64 // the run key's create revision
	lost    chan struct{}
	stop    context.CancelFunc
}

// Elect decides whether this member takes the backup of period: it does
// when no member holds the run key and the last backup is of another
// period (or force); it waits while another member holds the key, and
// tries again once that member is done or gone. skip says why it does not
// take it: the period's backup is taken already.
func Elect(ctx context.Context, cli *clientv3.Client, cluster, member string, period time.Time, force bool, waiting func(holder Claim)) (turn *Turn, skip string, err error) {
	var lease clientv3.LeaseID
	defer func() {
		if turn == nil && lease != 0 {
			revokeLease(cli, lease)
		}
	}()
	for {
		resp, err := cli.Get(ctx, lastKey(cluster))
		if err != nil {
			return nil, "", fmt.Errorf("read the last backup: %w", err)
		}
		var last Last
		lastRev := int64(0)
		if len(resp.Kvs) > 0 {
			lastRev = resp.Kvs[0].ModRevision
			_ = json.Unmarshal(resp.Kvs[0].Value, &last)
		}
		if !force && last.Period.Equal(period) {
			return nil, fmt.Sprintf("the backup of the period from %s is taken already: %s, by %s at %s", period.UTC().Format(time.RFC3339), last.Object, last.Member, last.At.UTC().Format(time.RFC3339)), nil
		}
		// A new lease for each claim: one granted before a wait has
		// expired since.
		if lease != 0 {
			revokeLease(cli, lease)
		}
		g, err := cli.Grant(ctx, int64(LeaseTTL/time.Second))
		if err != nil {
			return nil, "", fmt.Errorf("take a lease: %w", err)
		}
		lease = g.ID
		claim, _ := json.Marshal(Claim{Member: member, Period: period, Started: time.Now().UTC()})
		txn, err := cli.Txn(ctx).If(
			clientv3.Compare(clientv3.CreateRevision(runKey(cluster)), "=", 0),
			clientv3.Compare(clientv3.ModRevision(lastKey(cluster)), "=", lastRev),
		).Then(clientv3.OpPut(runKey(cluster), string(claim), clientv3.WithLease(lease))).
			Else(clientv3.OpGet(runKey(cluster))).Commit()
		if err != nil {
			return nil, "", fmt.Errorf("claim the backup: %w", err)
		}
		if txn.Succeeded {
			return startTurn(cli, cluster, lease, txn.Header.Revision)
		}
		held := txn.Responses[0].GetResponseRange().Kvs
		if len(held) == 0 {
			// The last backup changed since it was read: read it again.
			continue
		}
		var holder Claim
		_ = json.Unmarshal(held[0].Value, &holder)
		if waiting != nil {
			waiting(holder)
		}
		if err := waitGone(ctx, cli, runKey(cluster), held[0].ModRevision); err != nil {
			return nil, "", err
		}
	}
}

// waitGone waits until key, at revision rev, is deleted.
func waitGone(ctx context.Context, cli *clientv3.Client, key string, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range cli.Watch(wctx, key, clientv3.WithRev(rev+1)) {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("wait for the member taking the backup: %w", err)
		}
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypeDelete {
				return nil
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("wait for the member taking the backup: the watch ended")
}

func startTurn(cli *clientv3.Client, cluster string, lease clientv3.LeaseID, rev int64) (*Turn, string, error) {
	kctx, stop := context.WithCancel(context.Background())
	ch, err := cli.KeepAlive(kctx, lease)
	if err != nil {
		stop()
		return nil, "", fmt.Errorf("keep the lease: %w", err)
	}
	t := &Turn{cli: cli, cluster: cluster, lease: lease, rev: rev, lost: make(chan struct{}), stop: stop}
	go func() {
		for range ch {
		}
		close(t.lost)
	}()
	return t, "", nil
}

// Holds checks that the turn is still this member's, with time left on
// its lease: before the backup is made visible.
func (t *Turn) Holds(ctx context.Context) error {
	select {
	case <-t.lost:
		return fmt.Errorf("this member lost its lease: another member may be taking the backup")
	default:
	}
	ttl, err := t.cli.TimeToLive(ctx, t.lease)
	if err != nil {
		return fmt.Errorf("read the lease: %w", err)
	}
	if ttl.TTL < int64(LeaseTTL/time.Second)/3 {
		return fmt.Errorf("this member's lease has %d s left: it may have lost its turn", ttl.TTL)
	}
	txn, err := t.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(runKey(t.cluster)), "=", t.rev)).Commit()
	if err != nil {
		return fmt.Errorf("read the turn: %w", err)
	}
	if !txn.Succeeded {
		return fmt.Errorf("this member's turn is over: another member holds it")
	}
	return nil
}

// Done records the backup taken and ends the turn.
func (t *Turn) Done(ctx context.Context, last Last) error {
	defer t.Release()
	b, _ := json.Marshal(last)
	txn, err := t.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(runKey(t.cluster)), "=", t.rev)).
		Then(clientv3.OpPut(lastKey(t.cluster), string(b)), clientv3.OpDelete(runKey(t.cluster))).Commit()
	if err != nil {
		return fmt.Errorf("record the backup taken: %w", err)
	}
	if !txn.Succeeded {
		return fmt.Errorf("record the backup taken: this member's turn was over")
	}
	return nil
}

// Release ends the turn: the lease goes, and the run key with it, so a
// member that waits takes its turn.
func (t *Turn) Release() {
	t.stop()
	revokeLease(t.cli, t.lease)
}

func revokeLease(cli *clientv3.Client, lease clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = cli.Revoke(ctx, lease)
}
