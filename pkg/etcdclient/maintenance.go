package etcdclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Alarm is an alarm a member raised: NOSPACE when its database reached its
// quota, CORRUPT when its data differs from its peers'. Either stops the
// cluster's writes until it is disarmed; reads go on.
type Alarm struct {
	MemberID uint64 `json:"-"`
	// Member is the member's name, or its hex ID when the member list has
	// no name for it.
	Member string `json:"member"`
	Type   string `json:"type"`
}

// AlarmList lists the cluster's active alarms through the first endpoint
// that answers. etcd reads its alarms through raft: without quorum, only
// MemberStatus.Alarms tells them.
func (c *Client) AlarmList(ctx context.Context, urls []string, timeout time.Duration) ([]Alarm, error) {
	var alarms []Alarm
	err := c.first(ctx, urls, timeout, func(ctx context.Context, cli *clientv3.Client, _ string) error {
		resp, err := cli.AlarmList(ctx)
		if err != nil {
			return err
		}
		names := map[uint64]string{}
		if list, err := cli.MemberList(ctx, clientv3.WithSerializable()); err == nil {
			for _, m := range list.Members {
				names[m.ID] = m.Name
			}
		}
		alarms = nil
		for _, a := range resp.Alarms {
			name := names[a.MemberID]
			if name == "" {
				name = FormatID(a.MemberID)
			}
			alarms = append(alarms, Alarm{MemberID: a.MemberID, Member: name, Type: a.Alarm.String()})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list alarms: %w", err)
	}
	return alarms, nil
}

// AlarmDisarm disarms one alarm of one member, through the first endpoint
// that takes it; an alarm no longer active is a success. A NOSPACE alarm
// disarmed while the member's database is still over its quota is raised
// again by the next write: compact and defragment first.
func (c *Client) AlarmDisarm(ctx context.Context, urls []string, a Alarm, timeout time.Duration) error {
	who := a.Member
	if who == "" {
		who = FormatID(a.MemberID)
	}
	t, ok := etcdserverpb.AlarmType_value[a.Type]
	if !ok || t == int32(etcdserverpb.AlarmType_NONE) || a.MemberID == 0 {
		// etcd reads a request without member or type as "every alarm".
		return fmt.Errorf("disarm alarm %q of member %s: name one member and one alarm type (NOSPACE or CORRUPT)", a.Type, who)
	}
	err := c.first(ctx, urls, timeout, func(ctx context.Context, cli *clientv3.Client, _ string) error {
		_, err := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: a.MemberID, Alarm: etcdserverpb.AlarmType(t)})
		return err
	})
	if err != nil {
		return fmt.Errorf("disarm alarm %s of member %s: %w", a.Type, who, err)
	}
	return nil
}

// Defragment rewrites the database of the member at clientURL, and only
// that member's, giving the space that compaction freed back to the file
// system. The member serves no request meanwhile, for seconds on a large
// database: give a timeout to match.
func (c *Client) Defragment(ctx context.Context, clientURL string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultCallTimeout
	}
	// A member that is down would hold the call until its long deadline.
	if err := c.probe(ctx, clientURL, min(timeout, time.Second)); err != nil {
		return fmt.Errorf("defragment %s: not reachable: %w", clientURL, err)
	}
	cli, err := c.endpoint(clientURL)
	if err != nil {
		return fmt.Errorf("defragment: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := maintenance(cli).Defragment(cctx, clientURL); err != nil {
		return fmt.Errorf("defragment %w", &endpointError{clientURL, err})
	}
	return nil
}

// Compact discards the keyspace's history before revision rev, through the
// first endpoint that takes it; every member compacts its own database as it
// applies the request. With physical, the call returns once the member that
// took it has removed the old revisions from its database, so that a
// defragment of it gives the space back; the others may still be at it. A
// revision compacted already is a success.
func (c *Client) Compact(ctx context.Context, urls []string, rev int64, physical bool, timeout time.Duration) error {
	var opts []clientv3.CompactOption
	if physical {
		opts = append(opts, clientv3.WithCompactPhysical())
	}
	err := c.first(ctx, urls, timeout, func(ctx context.Context, cli *clientv3.Client, _ string) error {
		_, err := cli.Compact(ctx, rev, opts...)
		if errors.Is(err, rpctypes.ErrCompacted) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("compact to revision %d: %w", rev, err)
	}
	return nil
}
