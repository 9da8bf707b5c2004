package execute

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/etcdadm-io/etcdadm/internal/etcdtest"
	"github.com/etcdadm-io/etcdadm/internal/fakehost"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/hostfile"
	"github.com/etcdadm-io/etcdadm/pkg/hosts"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/runtime/kubelet"
)

// An all-at-once stage runs every host's operations, whatever another
// host's fate, and names every host that failed; the next stage does not
// run.
func TestAllAtOnceNamesEveryFailedHost(t *testing.T) {
	x, fakes, _ := fakeHosts("a", "b", "c")
	fakes["a"].Handle(fakehost.Exact("work"), fakehost.Fail(1, "disk full"))
	fakes["b"].Handle(fakehost.Exact("work"), fakehost.Reply(""))
	fakes["c"].Handle(fakehost.Exact("work"), fakehost.Fail(2, "no route"))
	st := plan.Stage{Name: "prepare", Rollout: plan.AllAtOnce}
	for _, n := range []string{"a", "b", "c"} {
		st.Hosts = append(st.Hosts, plan.HostOps{Host: n, Ops: []plan.Op{ops.Run{Command: "work"}}})
	}
	next := plan.Stage{Name: "start", Rollout: plan.AllAtOnce, Hosts: []plan.HostOps{{Host: "b", Ops: []plan.Op{ops.Run{Command: "start"}}}}}
	res, err := x.Run(context.Background(), &plan.Plan{Stages: []plan.Stage{st, next}})
	var he *hosts.HostsError
	if !errors.As(err, &he) || len(he.Errors) != 2 || he.Errors[0].Host != "a" || he.Errors[1].Host != "c" ||
		!strings.Contains(err.Error(), `stage "prepare"`) || !strings.Contains(err.Error(), "changing the hosts failed on 2 host(s)") {
		t.Fatalf("err = %v", err)
	}
	if len(res.Hosts) != 1 || res.Hosts[0].Host != "b" || res.Hosts[0].Ran[0] != "work" {
		t.Errorf("result %+v: b's work is not reported", res.Hosts)
	}
	for _, n := range []string{"a", "b", "c"} {
		if calls := fakes[n].Commands(); len(calls) != 1 {
			t.Errorf("%s ran %q, want its work alone (the next stage must not run)", n, calls)
		}
	}
}

// refusingEtcd is an etcd client whose members all refuse connections, and
// the number of dials it made.
func refusingEtcd() (*etcdclient.Client, *atomic.Int32) {
	var dials atomic.Int32
	return etcdclient.New(&tls.Config{}, func(context.Context, string) (net.Conn, error) {
		dials.Add(1)
		return nil, errors.New("connection refused")
	}), &dials
}

// Before each host of a one-at-a-time stage with a quorum, the members are
// asked afresh: with too few healthy voters left, the run stops before the
// host is touched.
func TestOneAtATimeChecksQuorumBeforeEachHost(t *testing.T) {
	x, fakes, _ := fakeHosts("a", "b", "c")
	cli, dials := refusingEtcd()
	defer cli.Close()
	x.Etcd = cli
	restart := ops.RestartEtcd{Disruptive: true, Change: &hostfile.Change{Path: "/etc/kubernetes/manifests/etcd.yaml"}}
	st := plan.Stage{Name: "update members", Rollout: plan.OneAtATime, Quorum: 2, Hosts: []plan.HostOps{
		{Host: "a", Ops: []plan.Op{restart}}, {Host: "b", Ops: []plan.Op{restart}}}}
	_, err := x.Run(context.Background(), &plan.Plan{Stages: []plan.Stage{st}})
	if err == nil || !strings.Contains(err.Error(), "quorum check failed") || !strings.Contains(err.Error(), "a: stopped before touching it: 0 voting member(s) would be healthy, below the quorum of 2") {
		t.Fatalf("err = %v", err)
	}
	if dials.Load() != 3 {
		t.Errorf("%d dials, want the three members asked once, right before a", dials.Load())
	}
	for _, f := range fakes {
		if n := len(f.Calls()); n != 0 {
			t.Errorf("%s was touched: %q", f.Host(), f.Commands())
		}
	}
	// Without a quorum to keep, nobody is asked.
	x, _, _ = fakeHosts("a")
	x.Etcd = cli
	fakesA := x.Hosts.T["a"].(*fakehost.Host)
	fakesA.Handle(fakehost.Exact("true"), fakehost.Reply(""))
	dials.Store(0)
	st = plan.Stage{Name: "clean", Rollout: plan.OneAtATime, Hosts: []plan.HostOps{{Host: "a", Ops: []plan.Op{ops.Run{Command: "true"}}}}}
	if _, err := x.Run(context.Background(), &plan.Plan{Stages: []plan.Stage{st}}); err != nil || dials.Load() != 0 {
		t.Errorf("err %v, %d dials; want the stage run without asking etcd", err, dials.Load())
	}
}

// rollbackRuntime restarts nothing and records the rollbacks it is asked for.
type rollbackRuntime struct {
	kubelet.Runtime
	restarts  atomic.Int32
	rollbacks []string
}

func (r *rollbackRuntime) Restart(context.Context, ops.Env, ops.RestartEtcd) error {
	r.restarts.Add(1)
	return nil
}

func (r *rollbackRuntime) RollBack(_ context.Context, e ops.Env, op ops.RestartEtcd, cause error) error {
	r.rollbacks = append(r.rollbacks, e.Host().Name+":"+string(op.Rollback.Data))
	return errors.Join(cause, errors.New("back on the old manifest"))
}

// A restart that carries a rollback is undone when an operation after it
// fails, but not when only the wait for the whole cluster does; a restart
// without one is not.
func TestRollbackAfterAFailedRestart(t *testing.T) {
	old := &hostfile.File{Path: "/etc/kubernetes/manifests/etcd.yaml", Data: []byte("old")}
	upgrade := ops.RestartEtcd{Change: &hostfile.Change{Path: old.Path}, Rollback: old, Disruptive: true}
	for _, tc := range []struct {
		name      string
		after     plan.Op
		restart   ops.RestartEtcd
		rollbacks int
	}{
		{"a failing check after an upgrade", ops.Run{Command: "check"}, upgrade, 1},
		{"a failing wait for the cluster", ops.WaitCluster{Members: []string{"a"}}, upgrade, 0},
		{"a failing check after a plain restart", ops.Run{Command: "check"}, ops.RestartEtcd{Change: upgrade.Change, Disruptive: true}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, fakes, _ := fakeHosts("a")
			rt := &rollbackRuntime{}
			x.Runtime = rt
			cli, _ := refusingEtcd()
			defer cli.Close()
			x.Etcd, x.HealthTimeout = cli, 1
			fakes["a"].Handle(fakehost.Exact("check"), fakehost.Fail(1, "not healthy"))
			p := &plan.Plan{Stages: []plan.Stage{{Name: "upgrade", Rollout: plan.OneAtATime, Hosts: []plan.HostOps{{Host: "a", Ops: []plan.Op{tc.restart, tc.after}}}}}}
			_, err := x.Run(context.Background(), p)
			if err == nil || rt.restarts.Load() != 1 || len(rt.rollbacks) != tc.rollbacks {
				t.Fatalf("err %v, %d restarts, rollbacks %v; want %d rollback(s)", err, rt.restarts.Load(), rt.rollbacks, tc.rollbacks)
			}
			if tc.rollbacks > 0 && (rt.rollbacks[0] != "a:old" || !strings.Contains(err.Error(), "back on the old manifest") || !strings.Contains(err.Error(), "not healthy")) {
				t.Errorf("rollback %v, err %v: want a back on its old manifest, and the cause", rt.rollbacks, err)
			}
		})
	}
}

// Once the member was seen running and healthy after its restart, a later
// failure does not put it back: the rollback is for a member that did not
// come up.
func TestNoRollbackOnceTheMemberIsBack(t *testing.T) {
	cl := etcdtest.Start(t, 1)
	x, fakes, _ := fakeHosts("m0")
	rt := &rollbackRuntime{}
	x.Runtime, x.Etcd = rt, cl.Client(t, cl.Dialer())
	fakes["m0"].Handle(fakehost.Exact("check"), fakehost.Fail(1, "disk full"))
	old := &hostfile.File{Path: "/etc/kubernetes/manifests/etcd.yaml", Data: []byte("old")}
	restart := ops.RestartEtcd{Change: &hostfile.Change{Path: old.Path}, Rollback: old, Disruptive: true}
	p := &plan.Plan{Stages: []plan.Stage{{Name: "update members", Rollout: plan.OneAtATime, Hosts: []plan.HostOps{{Host: "m0",
		Ops: []plan.Op{restart, ops.WaitMember{Member: "m0", Gated: true}, ops.Run{Command: "check"}}}}}}}
	_, err := x.Run(context.Background(), p)
	if err == nil || !strings.Contains(err.Error(), "disk full") || len(rt.rollbacks) != 0 {
		t.Fatalf("err %v, rollbacks %v; want the failure alone", err, rt.rollbacks)
	}
}

// Before every operation the run makes sure it still holds its hosts'
// locks: once one is lost, it stops before its next change.
func TestStopsOnceALockIsLost(t *testing.T) {
	x, fakes, _ := fakeHosts("a", "b")
	lost := false
	x.Locks = func() error {
		if lost {
			return errors.New("this run's lock of the host is lost on b")
		}
		return nil
	}
	fakes["a"].Handle(fakehost.Exact("first"), func(context.Context, string, io.Reader) ([]byte, error) {
		lost = true
		return nil, nil
	})
	st := plan.Stage{Name: "update members", Rollout: plan.OneAtATime, Hosts: []plan.HostOps{
		{Host: "a", Ops: []plan.Op{ops.Run{Command: "first"}, ops.Run{Command: "second"}}},
		{Host: "b", Ops: []plan.Op{ops.Run{Command: "third"}}}}}
	_, err := x.Run(context.Background(), &plan.Plan{Stages: []plan.Stage{st}})
	if err == nil || !strings.Contains(err.Error(), `stopped before "$ second"`) || !strings.Contains(err.Error(), "lock of the host is lost on b") {
		t.Fatalf("err = %v", err)
	}
	if got := fakes["a"].Commands(); len(got) != 1 || len(fakes["b"].Commands()) != 0 {
		t.Errorf("ran %q on a and %q on b, want the first command alone", got, fakes["b"].Commands())
	}
}
