package ops

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
)

// KindDisarmAlarm disarms one alarm of one member.
const KindDisarmAlarm Kind = "disarm-alarm"

// DisarmAlarm disarms alarm Type of member MemberID (hex), which the alarm
// list calls Member. With UnderQuota (NOSPACE), only once every member's
// database is under its quota when it runs, with room to write (see
// QuotaUse): the next writes would raise the alarm again otherwise.
type DisarmAlarm struct {
	Member     string `json:"member"`
	MemberID   string `json:"memberID"`
	Type       string `json:"type"`
	UnderQuota bool   `json:"underQuota,omitempty"`
	Why        string `json:"why,omitempty"`
}

func (DisarmAlarm) Kind() Kind   { return KindDisarmAlarm }
func (o DisarmAlarm) Meta() Meta { return Meta{Why: o.Why} }
func (o DisarmAlarm) String() string {
	s := fmt.Sprintf("etcd: disarm the %s alarm of member %s", o.Type, o.Member)
	if o.UnderQuota {
		s += fmt.Sprintf(", once every member's database takes at most %d%% of its quota", QuotaUse)
	}
	return s
}

func (o DisarmAlarm) alarm() (etcdclient.Alarm, error) {
	id, err := strconv.ParseUint(o.MemberID, 16, 64)
	if err != nil {
		return etcdclient.Alarm{}, fmt.Errorf("disarm %s of %s: member ID %q: %w", o.Type, o.Member, o.MemberID, err)
	}
	return etcdclient.Alarm{MemberID: id, Member: o.Member, Type: o.Type}, nil
}

func disarmAlarm(ctx context.Context, e Env, o DisarmAlarm) error {
	a, err := o.alarm()
	if err != nil {
		return err
	}
	urls := ClientURLs(e.Cluster())
	if o.UnderQuota {
		list, err := e.Etcd().MemberList(ctx, urls, etcdclient.DefaultCallTimeout)
		if err != nil {
			return fmt.Errorf("%s of %s not disarmed: %w", o.Type, o.Member, err)
		}
		var eps []etcdclient.Endpoint
		for _, m := range list.Members {
			if !m.Started() {
				continue
			}
			// The inventory's endpoint, as every other call; a member it
			// does not name, at the URL it advertises.
			ep := etcdclient.Endpoint{Name: m.Name, ClientURL: m.ClientURLs[0]}
			for _, known := range Endpoints(e.Cluster()) {
				if known.Name == m.Name {
					ep = known
				}
			}
			eps = append(eps, ep)
		}
		if over := OverQuota(e.Cluster(), e.Etcd().Status(ctx, eps, etcdclient.DefaultCallTimeout)); len(over) > 0 {
			return fmt.Errorf("%s of %s not disarmed: %s; it would be raised again by the next write. Delete keys or raise quota-backend-bytes in spec.etcd.extraArgs (then `etcdadm apply`), then run `etcdadm defrag` again", o.Type, o.Member, strings.Join(over, "; "))
		}
	}
	if err := e.Etcd().AlarmDisarm(ctx, urls, a, etcdclient.DefaultCallTimeout); err != nil {
		return err
	}
	e.Log().Printf("disarmed the %s alarm of member %s", o.Type, o.Member)
	return nil
}

// verifyDisarmed checks that the alarm is no longer in the alarm list.
func verifyDisarmed(ctx context.Context, e Env, o DisarmAlarm) error {
	a, err := o.alarm()
	if err != nil {
		return err
	}
	alarms, err := e.Etcd().AlarmList(ctx, ClientURLs(e.Cluster()), etcdclient.DefaultCallTimeout)
	if err != nil {
		return err
	}
	for _, b := range alarms {
		if b.MemberID == a.MemberID && b.Type == a.Type {
			return fmt.Errorf("the %s alarm of member %s is still raised", o.Type, o.Member)
		}
	}
	return nil
}

// QuotaUse is the share of its quota, in percent, a member's database may
// take for NOSPACE to be disarmed: etcd refuses a write that would take
// it past the quota, so a database just under it would raise the alarm
// again with the next writes. etcd-defrag's default threshold is the same.
const QuotaUse = 90

// OverQuota describes each member whose database takes more than QuotaUse
// percent of its quota, or whose size is unknown because it did not answer.
func OverQuota(c *config.Cluster, sts []etcdclient.MemberStatus) []string {
	var over []string
	for _, st := range sts {
		q := Quota(c, st)
		limit := q / 100 * QuotaUse
		switch {
		case !st.Answered():
			over = append(over, fmt.Sprintf("%s did not answer (%s), so its database size is unknown", st.Name, st.Error))
		case st.DBSize > limit:
			over = append(over, fmt.Sprintf("%s's database is %s, %s over %d%% of its quota of %s", st.Name, Bytes(st.DBSize), Bytes(st.DBSize-limit), QuotaUse, Bytes(q)))
		}
	}
	return over
}
