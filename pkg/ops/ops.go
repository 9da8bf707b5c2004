// Package ops holds the operations a plan is made of. Each kind of
// operation is one file: a small payload type the planner fills, how it
// is described to people, and its handler, which the executor calls with
// an Env (the host's transport, etcd, the member's runtime, the run's
// report); a line of the registry below ties the kind to its handler.
//
// ops owns what an operation does on a host, in etcd or on this machine.
// It must not import plan, the runtimes, gather or the executor: they
// import it.
package ops

import (
	"context"
	"fmt"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// Kind names an operation, in the plan's JSON.
type Kind string

// Op is one operation of a plan.
type Op interface {
	Kind() Kind
	// String describes the operation for people.
	String() string
	// Meta says why the operation is there and whether it stops the
	// host's running member.
	Meta() Meta
}

// Meta is what every operation says of itself.
type Meta struct {
	Why        string
	Disruptive bool
}

// LocalHost is the name a stage gives this machine, for the operations that
// run here (a snapshot).
const LocalHost = "(this machine)"

// Env is what an operation runs with: one host, the cluster, and the run
// it is part of. The executor makes one per host and stage.
type Env interface {
	Cluster() *config.Cluster
	// Host is the host the operation is for; only its name is set for
	// this machine and for a control-plane host.
	Host() config.Host
	// Transport reaches the host; nil when it cannot be reached.
	Transport() remote.Transport
	// TransportOf reaches another host of the run by the name its stage
	// gives it (the old host of a member that moves); nil for none.
	TransportOf(host string) remote.Transport
	Etcd() *etcdclient.Client
	Log() *progress.Log
	// Runtime runs the host's member.
	Runtime() Runner
	// Before are the member's processes before the host's operations
	// began, when an operation waits for a new one.
	Before() []facts.Process
	// HealthTimeout bounds every wait for a member or the cluster;
	// PromoteTimeout the retries of a learner's promotion.
	HealthTimeout() time.Duration
	PromoteTimeout() time.Duration
	// HealthGate bounds the wait for a member that ran before to run
	// again and answer: after its restart (past it, the restart is rolled
	// back), or after a cut run's (past it, the member is repaired).
	HealthGate() time.Duration
	// StateDir is etcdadm's directory on the host (pending-work markers).
	StateDir() string
	// BackupDir is this run's backup directory on the host.
	BackupDir() string
	// Report adds what an operation did to the run's result.
	Report(Done)
	// KeepReplaced records a file the run replaced (a binary, a
	// certificate) and where it kept the previous one; Replaced lists them
	// for the host: what a rollback puts back.
	KeepReplaced(Replaced)
	Replaced() []Replaced
}

// Done is what an operation did, for the run's result.
type Done struct {
	Wrote            string
	Ran              string
	RestartedEtcd    bool
	RestartedKubelet bool
	Imported         []string
	Snapshot         string
}

// Replaced is a file a run replaced on a host, and where it kept the
// previous one.
type Replaced struct{ Path, Backup string }

// Runner is how the member's runtime starts, stops and rolls back a
// member: the half of a runtime that runs.
type Runner interface {
	// Restart makes the member run as op says: a new process, which
	// Env.Before does not hold.
	Restart(ctx context.Context, e Env, op RestartEtcd) error
	// Stop stops the member for good, keeping what says how it starts
	// under the backup directory.
	Stop(ctx context.Context, e Env) error
	// RollBack puts a member that did not come up after op, a restart
	// with a Rollback, back on what it ran before, and waits for it; the
	// error says why it did not come up, as far as the host tells.
	RollBack(ctx context.Context, e Env, op RestartEtcd, cause error) error
}

// handler is what the executor does with one kind of operation.
type handler struct {
	// onHost is set when the operation runs through the host's
	// transport; the others are calls to etcd or run on this machine.
	onHost  bool
	execute func(context.Context, Env, Op) error
	// verify, nil for none, checks after execute that the host or the
	// cluster holds what the operation made.
	verify func(context.Context, Env, Op) error
}

// registry ties every kind of operation to its handler.
var registry = map[Kind]handler{
	KindMkdir:        handle(true, mkdir, nil),
	KindWrite:        handle(true, write, nil),
	KindMark:         handle(true, mark, nil),
	KindUnmark:       handle(true, unmark, nil),
	KindRun:          handle(true, run, nil),
	KindRestartEtcd:  handle(true, restartEtcd, nil),
	KindStopEtcd:     handle(true, stopEtcd, nil),
	KindBackup:       handle(true, backup, nil),
	KindAddLearner:   handle(false, addLearner, verifyLearner),
	KindPromote:      handle(false, promote, verifyVoter),
	KindRemoveMember: handle(false, removeMember, verifyRemoved),
	KindMoveLeader:   handle(false, moveLeader, nil),
	KindWaitMember:   handle(true, waitMember, nil),
	KindWaitCluster:  handle(false, waitCluster, nil),
	KindSnapshot:     handle(false, snapshotOp, nil),
	KindPushData:     handle(true, pushData, nil),
	KindSwapData:     handle(true, swapData, nil),
	KindImportImage:  handle(true, importImage, nil),
	KindRestoreData:  handle(false, restoreData, nil),
	KindCopyData:     handle(true, copyData, nil),
	KindUpdatePeer:   handle(false, updatePeer, verifyPeer),
	KindCompact:      handle(false, compact, nil),
	KindDefragment:   handle(false, defragment, nil),
	KindMoveLeaderTo: handle(false, moveLeaderTo, verifyLeads),
	KindDisarmAlarm:  handle(false, disarmAlarm, verifyDisarmed),
	KindAwaitRestart: handle(false, awaitRestart, nil),

	KindRestartAPIServer:    handle(true, restartAPIServer, nil),
	KindStopControlPlane:    handle(true, stopControlPlane, nil),
	KindStartControlPlane:   handle(true, startControlPlane, nil),
	KindUpdateKubeadmConfig: handle(true, updateKubeadmConfig, nil),
	KindWaitAPIServer:       handle(true, waitAPIServer, nil),
}

// handle adapts the functions of one payload type to a handler.
func handle[T Op](onHost bool, execute, verify func(context.Context, Env, T) error) handler {
	h := handler{onHost: onHost, execute: func(ctx context.Context, e Env, op Op) error { return execute(ctx, e, op.(T)) }}
	if verify != nil {
		h.verify = func(ctx context.Context, e Env, op Op) error { return verify(ctx, e, op.(T)) }
	}
	return h
}

// OnHost reports whether op runs through its host's transport.
func OnHost(op Op) bool { return registry[op.Kind()].onHost }

// Known reports whether op's kind has a handler.
func Known(op Op) bool {
	_, ok := registry[op.Kind()]
	return ok
}

// Execute runs op, then its verification where its kind has one.
func Execute(ctx context.Context, e Env, op Op) error {
	h, ok := registry[op.Kind()]
	if !ok {
		return fmt.Errorf("unknown operation %q", op.Kind())
	}
	if h.onHost && e.Transport() == nil {
		return fmt.Errorf("%s: the host is not reachable", op)
	}
	if err := h.execute(ctx, e, op); err != nil {
		return err
	}
	if h.verify != nil {
		if err := h.verify(ctx, e, op); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return nil
}

// Sleep waits d, or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
