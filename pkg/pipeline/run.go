package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/execute"
	"github.com/etcdadm-io/etcdadm/pkg/gather"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/status"
)

// Hooks let the caller see and decide at the points of a run.
type Hooks struct {
	// Confirm is asked, with the plan, before anything changes; an error
	// stops the run there. nil agrees.
	Confirm func(*plan.Plan) error
	// Saved is told what the PKI made once it is saved, before the hosts
	// change. nil for nobody.
	Saved func([]certs.Event)
}

// ExecOptions tune how a plan runs.
type ExecOptions struct {
	HealthTimeout time.Duration
	// HealthGate bounds the wait for a restarted member to run again and
	// answer; execute.DefaultHealthGate when zero.
	HealthGate time.Duration
	// KeepBackups is how many runs' backups a changed host keeps.
	KeepBackups int
}

// Outcome is what a run found and did.
type Outcome struct {
	// Plan is nil when the run stopped before one was made.
	Plan  *plan.Plan
	Facts *gather.Facts
	// Result is what the executor did; nil when it did not run.
	Result *execute.Result
	// Members are the members' health at the end.
	Members []etcdclient.MemberStatus
}

// Execute saves what the PKI lacks, then runs the plan.
func (s *Session) Execute(ctx context.Context, p *plan.Plan, o ExecOptions, h Hooks) (*execute.Result, error) {
	if o.KeepBackups < 0 {
		return nil, fmt.Errorf("keep %d backups: use 0 (keep all) or more", o.KeepBackups)
	}
	if err := s.savePKI(s.PKI, s.Events, h); err != nil {
		return nil, err
	}
	return s.executePlan(ctx, p, o)
}

func (s *Session) executePlan(ctx context.Context, p *plan.Plan, o ExecOptions) (*execute.Result, error) {
	if o.KeepBackups < 0 {
		return nil, fmt.Errorf("keep %d backups: use 0 (keep all) or more", o.KeepBackups)
	}
	x := &execute.Executor{Cluster: s.Cluster, Runtime: s.Runtime, Hosts: s.Hosts, Etcd: s.Etcd, Log: s.Log,
		HealthTimeout: o.HealthTimeout, HealthGate: o.HealthGate, Concurrency: s.opts.Concurrency, KeepBackups: o.KeepBackups, Stamp: s.stamp, Locks: s.holdsHosts}
	return x.Run(ctx, p)
}

// savePKI writes what pki computed and lacks on disk, and reaches etcd with
// it when the session could not yet.
func (s *Session) savePKI(pki *certs.PKI, events []certs.Event, h Hooks) error {
	if !pki.Unsaved() {
		return nil
	}
	if err := pki.Save(); err != nil {
		return err
	}
	if h.Saved != nil {
		h.Saved(events)
	}
	if s.Etcd == nil {
		return s.connectEtcd(pki)
	}
	return nil
}

// ConvergeOptions tune Converge.
type ConvergeOptions struct {
	ExecOptions
	// DryRun stops once the plan is made: nothing is written anywhere.
	DryRun bool
	// Check refuses a plan the command does not want to run.
	Check func(*plan.Plan) error
}

// Converge reads the hosts and etcd, plans, and runs the plan unless it is
// a dry run or empty, then waits for every member: apply, diff and certs
// renew.
func Converge(ctx context.Context, s *Session, o ConvergeOptions, h Hooks) (*Outcome, error) {
	f, err := s.Gather(ctx, !o.DryRun)
	if err != nil {
		return nil, err
	}
	out := &Outcome{Facts: f}
	out.Plan, err = plan.Build(s.Input(f, time.Now()))
	if err == nil && o.Check != nil {
		err = o.Check(out.Plan)
	}
	if err != nil || o.DryRun {
		return out, err
	}
	if out.Plan.Empty() {
		if err := s.savePKI(s.PKI, s.Events, h); err != nil {
			return out, err
		}
		// The facts were read a moment ago: they say how healthy it is.
		out.Members = status.Status(s.Cluster, f, nil, time.Now()).Statuses()
		if bad := etcdclient.Unhealthy(out.Members); len(bad) > 0 {
			return out, fmt.Errorf("members not healthy, and nothing in the inventory to change: %v", bad)
		}
		return out, nil
	}
	if h.Confirm != nil {
		if err := h.Confirm(out.Plan); err != nil {
			return out, err
		}
	}
	if out.Result, err = s.Execute(ctx, out.Plan, o.ExecOptions, h); err != nil {
		return out, err
	}
	out.Members, err = s.Etcd.WaitHealthy(ctx, ops.Endpoints(s.Cluster), o.HealthTimeout, nil)
	return out, err
}

// Change reads the hosts and etcd, plans with build, asks, and runs the
// plan: the commands that change membership (member remove and replace,
// reset). Without a CA nothing can be asked of etcd, and it is refused.
func Change(ctx context.Context, s *Session, build func(plan.Input) (*plan.Plan, error), o ConvergeOptions, h Hooks) (*Outcome, error) {
	if err := s.NeedEtcd("etcdadm cannot authenticate to the cluster"); err != nil {
		return nil, err
	}
	for name, err := range s.Unreachable {
		s.Log.Logger().Warn(fmt.Sprintf("%s cannot be reached: %v", name, err))
	}
	f, err := s.Gather(ctx, !o.DryRun)
	if err != nil {
		return nil, err
	}
	out := &Outcome{Facts: f}
	if out.Plan, err = build(s.Input(f, time.Now())); err != nil || o.DryRun || out.Plan.Empty() {
		return out, err
	}
	if h.Confirm != nil {
		if err := h.Confirm(out.Plan); err != nil {
			return out, err
		}
	}
	out.Result, err = s.Execute(ctx, out.Plan, o.ExecOptions, h)
	return out, err
}
