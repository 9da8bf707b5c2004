package ops

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
)

// KindWaitMember is the health gate after a member changed.
const KindWaitMember Kind = "wait-member"

// WaitMember waits for Member's new etcd process (when NewProcess), then
// for the member healthy, caught up with the leader and, when Version is
// set, reporting that version. Gated, for a member that ran before its
// restart, gives the new process the health gate (Env.HealthGate) to run
// and answer: a restart that carries a rollback is undone past it.
type WaitMember struct {
	Member     string `json:"member"`
	NewProcess bool   `json:"newProcess,omitempty"`
	Version    string `json:"version,omitempty"`
	Gated      bool   `json:"gated,omitempty"`
	Why        string `json:"why,omitempty"`
}

func (WaitMember) Kind() Kind   { return KindWaitMember }
func (o WaitMember) Meta() Meta { return Meta{Why: o.Why} }

func (o WaitMember) String() string {
	gate := ""
	if o.Gated {
		gate = " (running and answering within the health gate)"
	}
	switch {
	case o.Version != "":
		return fmt.Sprintf("wait for %s's new etcd process, reporting version %s, healthy and caught up%s", o.Member, o.Version, gate)
	case o.NewProcess:
		return fmt.Sprintf("wait for %s's new etcd process, healthy and caught up%s", o.Member, gate)
	}
	return fmt.Sprintf("wait for %s healthy and caught up", o.Member)
}

func waitMember(ctx context.Context, e Env, o WaitMember) error {
	var gate time.Duration
	if o.Gated {
		gate = e.HealthGate()
	}
	return awaitMember(ctx, e, o.NewProcess, o.Version, e.Before(), gate)
}

// AwaitMember is the health gate after the host's member changed: first
// its new process (another PID or start time than before, when asked:
// "healthy" alone could be the old process answering), then the member
// healthy and caught up with the leader.
func AwaitMember(ctx context.Context, e Env, newProcess bool, version string, before []facts.Process) error {
	return awaitMember(ctx, e, newProcess, version, before, 0)
}

// GateError is a member that did not run and answer within its health
// gate: its restart is rolled back.
type GateError struct{ Err error }

func (g *GateError) Error() string { return g.Err.Error() }
func (g *GateError) Unwrap() error { return g.Err }

// awaitMember is AwaitMember whose new process must run and answer within
// gate (none when zero); catching up may take the rest of the health
// timeout.
func awaitMember(ctx context.Context, e Env, newProcess bool, version string, before []facts.Process, gate time.Duration) error {
	h, log := e.Host(), e.Log()
	start := time.Now()
	deadline := start.Add(e.HealthTimeout())
	answerBy, bound := deadline, e.HealthTimeout()
	if gate > 0 && gate < e.HealthTimeout() {
		answerBy, bound = start.Add(gate), gate
	}
	if newProcess {
		log.Host(h.Name, "waiting for the new etcd process")
		var lost error
		for {
			now, err := Processes(ctx, e.Transport())
			if err != nil {
				if ctx.Err() != nil {
					return err
				}
				// A lost connection is reopened by the next call.
				lost = err
			} else if NewProcess(before, now) {
				break
			}
			if time.Now().After(answerBy) {
				err := fmt.Errorf("no new etcd process after %s (before: %v, now: %v)", bound, before, now)
				if lost != nil {
					err = fmt.Errorf("%w; the host did not always answer: %v", err, lost)
				}
				if gate > 0 {
					return &GateError{err}
				}
				return fmt.Errorf("%w; look at the kubelet's log", err)
			}
			if err := Sleep(ctx, newProcessPoll); err != nil {
				return err
			}
		}
		log.Host(h.Name, "new etcd process after %s; waiting for the member to be healthy and caught up", time.Since(start).Round(time.Millisecond))
	} else {
		log.Host(h.Name, "waiting for the member to be healthy and caught up")
	}
	me := etcdclient.Endpoint{Name: h.Name, ClientURL: manifests.ClientURL(h)}
	answered := false
	for {
		ok, healthy, why := caughtUp(ctx, e, me, version)
		answered = answered || healthy
		if ok {
			if version != "" {
				log.Host(h.Name, "reports version %s, healthy and caught up after %s", version, time.Since(start).Round(time.Millisecond))
				return nil
			}
			log.Host(h.Name, "healthy and caught up after %s", time.Since(start).Round(time.Millisecond))
			return nil
		}
		if gate > 0 && !answered && time.Now().After(answerBy) {
			return &GateError{fmt.Errorf("%s's etcd did not answer as a healthy member within %s: %s", h.Name, bound, why)}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is not healthy and caught up after %s: %s", h.Name, e.HealthTimeout(), why)
		}
		if err := Sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

// newProcessPoll is how often a host is asked for the member's new
// process: the wait is most of a member's start, and one look costs the
// host a few milliseconds of ss.
const newProcessPoll = 100 * time.Millisecond

// CatchUpSlack is how many raft entries a member may trail the leader by
// and count as caught up: the two are read one after the other while
// clients keep writing.
const CatchUpSlack = 100

// applied is the last raft entry the member applied: a member that holds
// entries it has not applied yet (after a defragment, a restart) is still
// behind. An etcd that does not report it has its committed index stand in.
func applied(st etcdclient.MemberStatus) uint64 {
	if st.RaftAppliedIndex > 0 {
		return st.RaftAppliedIndex
	}
	return st.RaftIndex
}

// caughtUp reports whether the member is healthy and caught up, whether
// it is healthy (and on version), and why not.
func caughtUp(ctx context.Context, e Env, me etcdclient.Endpoint, version string) (ok, healthy bool, why string) {
	all := e.Etcd().Status(ctx, Endpoints(e.Cluster()), 2*time.Second)
	var leader *etcdclient.MemberStatus
	for i := range all {
		if all[i].Leader && all[i].Healthy {
			leader = &all[i]
		}
	}
	if leader == nil {
		return false, false, fmt.Sprintf("no healthy leader (%v)", etcdclient.Unhealthy(all))
	}
	st := e.Etcd().Status(ctx, []etcdclient.Endpoint{me}, 2*time.Second)[0]
	switch {
	case !st.Healthy:
		return false, false, st.Error
	case version != "" && strings.TrimPrefix(st.Version, "v") != version:
		return false, false, fmt.Sprintf("it reports version %s, not %s", st.Version, version)
	case applied(st)+CatchUpSlack < leader.RaftIndex:
		return false, true, fmt.Sprintf("applied raft index %d, the leader's index %d", applied(st), leader.RaftIndex)
	}
	return true, true, ""
}
