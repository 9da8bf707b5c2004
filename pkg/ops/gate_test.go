package ops_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/fakehost"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
)

// processes makes h's etcd process the one pid names, 0 for none.
func processes(h *fakehost.Host, pid *atomic.Int32) {
	h.Handle(fakehost.Exact(facts.ProcessScript(manifests.ClientPort)), func(context.Context, string, io.Reader) ([]byte, error) {
		if p := pid.Load(); p != 0 {
			return []byte("proc " + string(rune('0'+p)) + " 100 -\n"), nil
		}
		return nil, nil
	})
}

// A restarted member whose new etcd never runs, or runs but never answers,
// fails its gated wait once the health gate has passed, long before the
// health timeout, with a GateError (what rolls the restart back); without
// the gate it is given the whole timeout.
func TestGatedWaitEndsAtTheHealthGate(t *testing.T) {
	m := maintain(t, 1)
	for _, tc := range []struct {
		name string
		pid  int32
		want string
	}{
		{"no new process", 1, "no new etcd process after 400ms"},
		{"a new process that does not answer", 2, "did not answer as a healthy member within 400ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := fakehost.New("m0")
			var pid atomic.Int32
			pid.Store(tc.pid)
			processes(h, &pid)
			e := m.env(0)
			e.T, e.Health, e.Gate = h, time.Minute, 400*time.Millisecond
			e.Procs = []facts.Process{{PID: 1, Start: 100}}
			// The member is down: nothing answers at its client URL.
			m.c.Members[0].Stop()
			start := time.Now()
			err := ops.Execute(context.Background(), e, ops.WaitMember{Member: "m0", NewProcess: true, Gated: true})
			var gate *ops.GateError
			if !errors.As(err, &gate) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want a GateError saying %q", err, tc.want)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("took %s: the gate is 400ms", took)
			}
		})
	}
	// Without the gate, the wait is the health timeout's.
	h := fakehost.New("m0")
	var pid atomic.Int32
	pid.Store(1)
	processes(h, &pid)
	e := m.env(0)
	e.T, e.Health, e.Gate = h, 800*time.Millisecond, 100*time.Millisecond
	e.Procs = []facts.Process{{PID: 1, Start: 100}}
	start := time.Now()
	err := ops.Execute(context.Background(), e, ops.WaitMember{Member: "m0", NewProcess: true})
	var gate *ops.GateError
	if err == nil || errors.As(err, &gate) || time.Since(start) < 800*time.Millisecond {
		t.Errorf("an ungated wait: %v after %s, want the health timeout's error", err, time.Since(start))
	}
}

// The wait for a member a cut run was restarting ends as soon as it is
// healthy, and past the health gate without an error: its repair follows.
func TestAwaitRestart(t *testing.T) {
	m := maintain(t, 1)
	e := m.env(0)
	e.Gate = 300 * time.Millisecond
	op := ops.AwaitRestart{Member: "m0", Marker: facts.PendingEtcdRestart}
	start := time.Now()
	if err := ops.Execute(context.Background(), e, op); err != nil || time.Since(start) > 2*time.Second {
		t.Fatalf("a healthy member: %v after %s", err, time.Since(start))
	}
	m.c.Members[0].Stop()
	start = time.Now()
	if err := ops.Execute(context.Background(), e, op); err != nil || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("a member that stays down: %v after %s, want no error once the gate passed", err, time.Since(start))
	}
	if !strings.Contains(m.log.String(), "going on with its repair") {
		t.Errorf("log:\n%s", m.log.String())
	}
	if !strings.Contains(op.String(), "cut run") {
		t.Errorf("described as %q", op)
	}
}
