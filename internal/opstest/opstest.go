// Package opstest is an ops.Env for the tests of one operation or of a
// runtime's half that runs: a host's transport, its cluster, and what the
// operations reported, without an executor. Only tests import it.
package opstest

import (
	"path"
	"sync"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// Env runs operations on one host. Its zero timeouts are a minute.
type Env struct {
	C         *config.Cluster
	H         config.Host
	T         remote.Transport
	Client    *etcdclient.Client
	L         *progress.Log
	R         ops.Runner
	Procs     []facts.Process
	State     string
	Backups   string
	Stamp     string
	Health    time.Duration
	Promotion time.Duration
	// Gate is the health gate; Health when zero.
	Gate time.Duration
	// Others are the other hosts' transports, by the names stages give them.
	Others map[string]remote.Transport

	mu   sync.Mutex
	done []ops.Done
	kept []ops.Replaced
}

var _ ops.Env = (*Env)(nil)

func (e *Env) Cluster() *config.Cluster    { return e.C }
func (e *Env) Host() config.Host           { return e.H }
func (e *Env) Transport() remote.Transport { return e.T }
func (e *Env) Etcd() *etcdclient.Client    { return e.Client }
func (e *Env) Runtime() ops.Runner         { return e.R }
func (e *Env) Before() []facts.Process     { return e.Procs }
func (e *Env) StateDir() string            { return e.State }

// Log discards when L is nil.
func (e *Env) Log() *progress.Log {
	if e.L == nil {
		return progress.NewLog(nil)
	}
	return e.L
}

// TransportOf is the named one of Others.
func (e *Env) TransportOf(host string) remote.Transport { return e.Others[host] }

// BackupDir is Backups/Stamp.
func (e *Env) BackupDir() string { return path.Join(e.Backups, e.Stamp) }

func (e *Env) HealthTimeout() time.Duration  { return orMinute(e.Health) }
func (e *Env) PromoteTimeout() time.Duration { return orMinute(e.Promotion) }

func (e *Env) HealthGate() time.Duration {
	if e.Gate == 0 {
		return e.HealthTimeout()
	}
	return e.Gate
}

func orMinute(d time.Duration) time.Duration {
	if d == 0 {
		return time.Minute
	}
	return d
}

// Report records what an operation did; Done lists it.
func (e *Env) Report(d ops.Done) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.done = append(e.done, d)
}

// Done is what the operations reported, in order.
func (e *Env) Done() []ops.Done {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]ops.Done(nil), e.done...)
}

func (e *Env) KeepReplaced(r ops.Replaced) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.kept = append(e.kept, r)
}

func (e *Env) Replaced() []ops.Replaced {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]ops.Replaced(nil), e.kept...)
}
