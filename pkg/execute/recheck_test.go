package execute

import (
	"context"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/internal/etcdtest"
	"github.com/etcdadm-io/etcdadm/internal/fakehost"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
)

// startStage starts the three members at once because the plan found no
// quorum.
func startStage() plan.Stage {
	st := plan.Stage{Name: "recovery: start the members", Rollout: plan.AllAtOnce,
		QuorumLost: "no member named a leader in two reads 3s apart"}
	for _, n := range []string{"a", "b", "c"} {
		st.Hosts = append(st.Hosts, plan.HostOps{Host: n, Ops: []plan.Op{ops.Run{Command: "start etcd"}}})
	}
	return st
}

// Right before a stage that starts several members because the plan found
// no quorum, the members are asked again: still no leader, they start.
func TestStartStageRunsWhileNoLeader(t *testing.T) {
	x, fakes, out := fakeHosts("a", "b", "c")
	cli, dials := refusingEtcd()
	defer cli.Close()
	x.Etcd = cli
	for _, f := range fakes {
		f.Handle(fakehost.Exact("start etcd"), fakehost.Reply(""))
	}
	if _, err := x.Run(context.Background(), &plan.Plan{Stages: []plan.Stage{startStage()}}); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if dials.Load() != 3 {
		t.Errorf("%d dials: want every member asked once, right before", dials.Load())
	}
	for n, f := range fakes {
		if got := f.Commands(); len(got) != 1 {
			t.Errorf("%s ran %q", n, got)
		}
	}
}

// A member that names a leader again (here a running etcd, as host a)
// stops the stage before any member starts, saying to run again.
func TestStartStageStopsWhenALeaderIsBack(t *testing.T) {
	x, fakes, _ := fakeHosts("a", "b", "c")
	// Host a's client URL, https://127.0.0.1:2379, reaches the member; b and
	// c are down.
	c := etcdtest.Start(t, 1)
	x.Etcd = c.Client(t, c.Dialer())
	_, err := x.Run(context.Background(), &plan.Plan{Stages: []plan.Stage{startStage()}})
	if err == nil || !strings.Contains(err.Error(), "stopped before starting any member: a names a as its leader") ||
		!strings.Contains(err.Error(), "nothing was started: run the command again") {
		t.Fatalf("err = %v", err)
	}
	for n, f := range fakes {
		if got := f.Commands(); len(got) != 0 {
			t.Errorf("%s ran %q", n, got)
		}
	}
}
