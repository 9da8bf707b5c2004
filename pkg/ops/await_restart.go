package ops

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
)

// KindAwaitRestart waits for a member a cut run was restarting.
const KindAwaitRestart Kind = "await-restart"

// AwaitRestart waits, up to the health gate, for Member to run and answer
// as a healthy member: a run that was cut while it restarted or
// defragmented the member left its pending Marker, and the member may be
// coming back on what that run wrote. Past the gate it gives up without
// an error: the operations after it repair the member, or say why it is
// not healthy. It stops nothing.
type AwaitRestart struct {
	Member string `json:"member"`
	Marker string `json:"marker"`
	Why    string `json:"why,omitempty"`
}

func (AwaitRestart) Kind() Kind   { return KindAwaitRestart }
func (o AwaitRestart) Meta() Meta { return Meta{Why: o.Why} }

func (o AwaitRestart) String() string {
	return fmt.Sprintf("wait, up to the health gate, for %s, which a cut run left pending (%s), to run and answer; then go on", o.Member, o.Marker)
}

func awaitRestart(ctx context.Context, e Env, o AwaitRestart) error {
	eps := Endpoints(e.Cluster())
	i := slices.IndexFunc(eps, func(ep etcdclient.Endpoint) bool { return ep.Name == o.Member })
	if i < 0 {
		return fmt.Errorf("wait for %s: not a host of the inventory", o.Member)
	}
	log, gate := e.Log(), e.HealthGate()
	start := time.Now()
	log.Host(o.Member, "a cut run left it pending (%s): waiting up to %s for it to run and answer", o.Marker, gate)
	for {
		st := e.Etcd().Status(ctx, eps[i:i+1], 2*time.Second)[0]
		if st.Healthy {
			log.Host(o.Member, "healthy again after %s", time.Since(start).Round(time.Millisecond))
			return nil
		}
		if time.Since(start) > gate {
			log.Host(o.Member, "not healthy after %s (%s): going on with its repair", gate, st.Error)
			return nil
		}
		if err := Sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}
