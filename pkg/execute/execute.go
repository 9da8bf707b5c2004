// Package execute runs a plan's stages on the hosts: every operation through
// its handler (package ops), while the run still holds its hosts' locks,
// one host at a time behind a fresh quorum check or all at once, a member
// rolled back when it does not come up within the health gate after its
// restart, and what each host went through reported. It owns the stage loop, the
// per-host environment the operations run with, and the run's report; it
// must not import plan's builders' callers (gather, the pipeline, cmd).
package execute

import (
	"context"
	"fmt"
	"path"
	"slices"
	"sync"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/hosts"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
	"github.com/etcdadm-io/etcdadm/pkg/runtime"
)

// DefaultBackupDir is where a file etcdadm replaces or moves away is kept, on its host.
const DefaultBackupDir = "/var/lib/etcdadm/backup"

// Stamp is the name of a run's backup directory, started at t.
func Stamp(t time.Time) string { return t.UTC().Format("20060102T150405Z") }

// DefaultHealthGate is how long a restarted member has to run its new etcd
// and answer before it is put back on what it ran before: a member that
// starts takes seconds, one that cannot start never does.
const DefaultHealthGate = time.Minute

// Executor runs a plan's stages on the hosts.
type Executor struct {
	Cluster *config.Cluster
	Hosts   *hosts.Hosts
	Etcd    *etcdclient.Client
	Log     *progress.Log
	// Runtime runs the members: the inventory's, chosen by the caller.
	Runtime runtime.Runtime
	// BackupDir keeps, per run, what is replaced or moved away.
	BackupDir string
	// HealthTimeout bounds every wait for a member or the cluster.
	HealthTimeout time.Duration
	// PromoteTimeout bounds the retries of a learner's promotion.
	PromoteTimeout time.Duration
	// HealthGate bounds the wait for a restarted member to run again and
	// answer (DefaultHealthGate when zero, never more than HealthTimeout).
	HealthGate  time.Duration
	Concurrency int
	// StateDir is etcdadm's directory on the hosts (pending-work markers);
	// facts.StateDir when empty.
	StateDir string
	// KeepBackups is how many runs' backups each host this run changes
	// keeps under BackupDir; 0 keeps them all.
	KeepBackups int
	// Stamp names this run's backup directory on every host (UTC time,
	// 20060102T150405Z): a run that executes several plans keeps all it
	// replaced in one directory. Now's when empty.
	Stamp string
	// Locks, when set, says whether the run still holds the hosts' locks;
	// it is asked before every operation, and the run stops if not.
	Locks func() error

	stamp     string
	snapshots []string
	mu        sync.Mutex
	res       map[string]*HostResult
	// replaced are, by host, the binaries this run replaced and where it
	// kept the previous ones: what a failed upgrade goes back to.
	replaced map[string][]ops.Replaced
}

// HostResult says what a run did on one host.
type HostResult struct {
	Host             string   `json:"host"`
	Written          []string `json:"written,omitempty"`
	Ran              []string `json:"ran,omitempty"`
	RestartedKubelet bool     `json:"restartedKubelet,omitempty"`
	RestartedEtcd    bool     `json:"restartedEtcd,omitempty"`
	// Imported are the images imported into the host's containerd.
	Imported []string `json:"imported,omitempty"`
}

// Result is the outcome of a run.
type Result struct {
	Hosts []HostResult `json:"hosts"`
	// Snapshots are the snapshots the run saved on this machine.
	Snapshots []string                  `json:"snapshots,omitempty"`
	Members   []etcdclient.MemberStatus `json:"members,omitempty"`
	Warnings  []string                  `json:"warnings,omitempty"`
}

func (x *Executor) defaults() {
	if x.Log == nil {
		x.Log = progress.NewLog(nil)
	}
	if x.BackupDir == "" {
		x.BackupDir = DefaultBackupDir
	}
	if x.HealthTimeout == 0 {
		x.HealthTimeout = 5 * time.Minute
	}
	if x.PromoteTimeout == 0 {
		x.PromoteTimeout = 2 * time.Minute
	}
	if x.HealthGate == 0 {
		x.HealthGate = DefaultHealthGate
	}
	x.HealthGate = min(x.HealthGate, x.HealthTimeout)
	if x.StateDir == "" {
		x.StateDir = facts.StateDir
	}
	if x.stamp == "" {
		x.stamp = x.Stamp
	}
	if x.stamp == "" {
		x.stamp = Stamp(time.Now())
	}
	if x.res == nil {
		x.res = map[string]*HostResult{}
	}
}

// Run runs every stage in order. A stage that fails stops the run: the next
// stage, and in a one-at-a-time stage the next host, is not touched.
func (x *Executor) Run(ctx context.Context, p *plan.Plan) (*Result, error) {
	if x.Runtime == nil {
		return nil, fmt.Errorf("execute: no runtime for the members")
	}
	x.defaults()
	defer x.pruneBackups(context.WithoutCancel(ctx))
	for i, st := range p.Stages {
		x.Log.Printf("stage %d/%d: %s (%s)", i+1, len(p.Stages), st.Name, st.Rollout)
		if st.Why != "" {
			x.Log.Printf("  why: %s", st.Why)
		}
		var err error
		if st.Rollout == plan.AllAtOnce {
			err = x.allAtOnce(ctx, st)
		} else {
			err = x.oneAtATime(ctx, st)
		}
		if err != nil {
			return x.result(), fmt.Errorf("stage %q: %w", st.Name, err)
		}
	}
	return x.result(), nil
}

func (x *Executor) result() *Result {
	r := &Result{Snapshots: x.snapshots}
	for _, h := range x.Cluster.AllHosts() {
		if hr, ok := x.res[h.Name]; ok {
			r.Hosts = append(r.Hosts, *hr)
		}
	}
	return r
}

// Add adds what another run did, host by host: the commands that run
// several plans (a CA rotation's stages) report them as one.
func (r *Result) Add(o *Result) {
	for _, h := range o.Hosts {
		i := slices.IndexFunc(r.Hosts, func(x HostResult) bool { return x.Host == h.Host })
		if i < 0 {
			r.Hosts = append(r.Hosts, h)
			continue
		}
		x := &r.Hosts[i]
		x.Written = append(x.Written, h.Written...)
		x.Ran = append(x.Ran, h.Ran...)
		x.Imported = append(x.Imported, h.Imported...)
		x.RestartedKubelet = x.RestartedKubelet || h.RestartedKubelet
		x.RestartedEtcd = x.RestartedEtcd || h.RestartedEtcd
	}
	r.Snapshots = append(r.Snapshots, o.Snapshots...)
	r.Warnings = append(r.Warnings, o.Warnings...)
	if o.Members != nil {
		r.Members = o.Members
	}
}

func (x *Executor) allAtOnce(ctx context.Context, st plan.Stage) error {
	if st.QuorumLost != "" {
		if err := x.checkNoLeader(ctx, st.QuorumLost); err != nil {
			return err
		}
	}
	var targets []config.Host
	steps := map[string][]plan.Op{}
	for _, ho := range st.Hosts {
		targets = append(targets, config.Host{Name: ho.Host})
		steps[ho.Host] = ho.Ops
	}
	err := hosts.ForEach(ctx, targets, x.Concurrency, func(ctx context.Context, h config.Host) error {
		return x.hostOps(ctx, h.Name, steps[h.Name])
	})
	if err != nil {
		return hosts.Named(err, "changing the hosts")
	}
	if len(st.Wait) > 0 {
		x.Log.Printf("waiting for %d member(s) to be healthy (mTLS, healthcheck-client certificate)", len(st.Wait))
		if _, err := x.Etcd.WaitHealthy(ctx, ops.EndpointsOf(x.Cluster, st.Wait), x.HealthTimeout, nil); err != nil {
			return err
		}
	}
	return nil
}

func (x *Executor) oneAtATime(ctx context.Context, st plan.Stage) error {
	for _, ho := range st.Hosts {
		if st.Quorum > 0 {
			if err := x.checkQuorum(ctx, ho, st.Quorum); err != nil {
				return &hosts.HostsError{What: "quorum check", Errors: []*hosts.HostError{{Host: ho.Host, Err: err}}}
			}
		}
		if err := x.hostOps(ctx, ho.Host, ho.Ops); err != nil {
			return &hosts.HostsError{What: "changing the host", Errors: []*hosts.HostError{{Host: ho.Host, Err: err}}}
		}
	}
	return nil
}

// checkQuorum makes sure, just before a host is touched, that the cluster
// can still lose that host's member: the facts the plan was made from may
// be seconds old.
func (x *Executor) checkQuorum(ctx context.Context, ho plan.HostOps, quorum int) error {
	disruptive := slices.ContainsFunc(ho.Ops, func(o plan.Op) bool { return o.Meta().Disruptive })
	sts := x.Etcd.Status(ctx, ops.Endpoints(x.Cluster), 2*time.Second)
	healthy, targetHealthy := 0, false
	for _, s := range sts {
		if s.Healthy && !s.Learner {
			healthy++
			if s.Name == ho.Host {
				targetHealthy = true
			}
		}
	}
	left := healthy
	if disruptive && targetHealthy {
		left--
	}
	if left < quorum {
		return fmt.Errorf("stopped before touching it: %d voting member(s) would be healthy, below the quorum of %d (%v)", left, quorum, etcdclient.Unhealthy(sts))
	}
	return nil
}

// checkNoLeader asks the members again right before a stage that starts
// several at once because the plan found no quorum: a member that names a
// leader now means a quorum is back, which starting them all could cost.
func (x *Executor) checkNoLeader(ctx context.Context, planned string) error {
	if x.Etcd == nil {
		return fmt.Errorf("stopped before starting any member: the members cannot be asked whether they still have no leader")
	}
	sts := x.Etcd.Status(ctx, ops.Endpoints(x.Cluster), 2*time.Second)
	names := map[uint64]string{}
	for _, s := range sts {
		if s.Answered() {
			names[s.MemberID] = s.Name
		}
	}
	for _, s := range sts {
		if !s.Answered() || s.LeaderID == 0 {
			continue
		}
		leader := names[s.LeaderID]
		if leader == "" {
			leader = "member " + etcdclient.FormatID(s.LeaderID)
		}
		return fmt.Errorf("stopped before starting any member: %s names %s as its leader, so the cluster has a quorum again (the plan found none: %s); nothing was started: run the command again, to plan from what the cluster is now", s.Name, leader, planned)
	}
	x.Log.Printf("no member names a leader: starting them together")
	return nil
}

// hostOps runs one host's operations in order. A restart that carries a
// rollback puts the member back when it, or an operation after it, fails
// before the member is seen running and healthy (its WaitMember).
func (x *Executor) hostOps(ctx context.Context, host string, steps []plan.Op) error {
	e := &hostEnv{x: x, t: x.Hosts.T[host]}
	if h, ok := x.Cluster.Host(host); ok {
		e.h = h
	} else {
		// This machine, or a control-plane host: no member there.
		e.h.Name = host
	}
	if e.t != nil && slices.ContainsFunc(steps, func(op plan.Op) bool { w, ok := op.(ops.WaitMember); return ok && w.NewProcess }) {
		var err error
		if e.before, err = ops.Processes(ctx, e.t); err != nil {
			return err
		}
	}
	var rollback *ops.RestartEtcd
	for _, op := range steps {
		if r, ok := op.(ops.RestartEtcd); ok && r.Rollback != nil {
			rollback = &r
		}
		if err := x.holdsHosts(); err != nil {
			// Not even a rollback: another run may hold the host now; the
			// pending marker tells the next run what this one left.
			return fmt.Errorf("stopped before %q: %w; nothing more was changed: run the command again", op, err)
		}
		if err := ops.Execute(ctx, e, op); err != nil {
			if rollback != nil && op.Kind() != ops.KindWaitCluster {
				return x.Runtime.RollBack(ctx, e, *rollback, err)
			}
			return err
		}
		if op.Kind() == ops.KindWaitMember {
			// It runs and answers: nothing left to put back.
			rollback = nil
		}
	}
	return nil
}

// holdsHosts is nil while the run holds the hosts' locks.
func (x *Executor) holdsHosts() error {
	if x.Locks == nil {
		return nil
	}
	return x.Locks()
}

// hostEnv is what the operations of one host run with.
type hostEnv struct {
	x      *Executor
	h      config.Host
	t      remote.Transport
	before []facts.Process
}

func (e *hostEnv) Cluster() *config.Cluster      { return e.x.Cluster }
func (e *hostEnv) Host() config.Host             { return e.h }
func (e *hostEnv) Transport() remote.Transport   { return e.t }
func (e *hostEnv) Etcd() *etcdclient.Client      { return e.x.Etcd }
func (e *hostEnv) Log() *progress.Log            { return e.x.Log }
func (e *hostEnv) Runtime() ops.Runner           { return e.x.Runtime }
func (e *hostEnv) Before() []facts.Process       { return e.before }
func (e *hostEnv) HealthTimeout() time.Duration  { return e.x.HealthTimeout }
func (e *hostEnv) PromoteTimeout() time.Duration { return e.x.PromoteTimeout }
func (e *hostEnv) HealthGate() time.Duration     { return e.x.HealthGate }
func (e *hostEnv) StateDir() string              { return e.x.StateDir }
func (e *hostEnv) BackupDir() string             { return path.Join(e.x.BackupDir, e.x.stamp) }

// TransportOf reaches another host of the run, by the name its stage gives it.
func (e *hostEnv) TransportOf(host string) remote.Transport { return e.x.Hosts.T[host] }

// Report adds what an operation did to the host's result, or the run's.
func (e *hostEnv) Report(d ops.Done) {
	x := e.x
	x.mu.Lock()
	defer x.mu.Unlock()
	if d.Snapshot != "" {
		x.snapshots = append(x.snapshots, d.Snapshot)
	}
	if d.Wrote == "" && d.Ran == "" && !d.RestartedEtcd && !d.RestartedKubelet && len(d.Imported) == 0 {
		return
	}
	hr, ok := x.res[e.h.Name]
	if !ok {
		hr = &HostResult{Host: e.h.Name}
		x.res[e.h.Name] = hr
	}
	if d.Wrote != "" {
		hr.Written = append(hr.Written, d.Wrote)
	}
	if d.Ran != "" {
		hr.Ran = append(hr.Ran, d.Ran)
	}
	hr.RestartedEtcd = hr.RestartedEtcd || d.RestartedEtcd
	hr.RestartedKubelet = hr.RestartedKubelet || d.RestartedKubelet
	hr.Imported = append(hr.Imported, d.Imported...)
}

func (e *hostEnv) KeepReplaced(r ops.Replaced) {
	e.x.mu.Lock()
	defer e.x.mu.Unlock()
	if e.x.replaced == nil {
		e.x.replaced = map[string][]ops.Replaced{}
	}
	e.x.replaced[e.h.Name] = append(e.x.replaced[e.h.Name], r)
}

func (e *hostEnv) Replaced() []ops.Replaced {
	e.x.mu.Lock()
	defer e.x.mu.Unlock()
	return slices.Clone(e.x.replaced[e.h.Name])
}

// Summary counts the healthy members of a status.
func Summary(sts []etcdclient.MemberStatus) (healthy, total int) {
	for _, s := range sts {
		if s.Healthy {
			healthy++
		}
	}
	return healthy, len(sts)
}
