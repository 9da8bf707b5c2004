// Package pipeline is the one path every command that reads or changes the
// hosts takes: open (the inventory's PKI worked out in memory, the hosts
// connected, an etcd client) → gather (facts, locked for a run that
// writes) → build (a plan, pure) → confirm → execute → report. Commands
// parse flags and call it; it never prints but through the run's log and
// the hooks its callers give.
//
// pipeline owns the order of a run and the choice of the inventory's
// runtime; it imports every package below it and none imports it but cmd
// and the tests.
package pipeline

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/execute"
	"github.com/etcdadm-io/etcdadm/pkg/gather"
	"github.com/etcdadm-io/etcdadm/pkg/hosts"
	"github.com/etcdadm-io/etcdadm/pkg/images"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
	"github.com/etcdadm-io/etcdadm/pkg/runtime"
	"github.com/etcdadm-io/etcdadm/pkg/snapshot"
)

// Options say how to open a session.
type Options struct {
	// Connect opens a transport to one host.
	Connect     hosts.Connector
	Concurrency int
	// EtcdTimeout bounds every call to etcd while gathering.
	EtcdTimeout time.Duration
	Log         *progress.Log
	// LockPKI takes the local PKI directory, for a run that writes; its
	// loose private keys are then made private (the others warn, to
	// KeyWarnings).
	LockPKI     bool
	KeyWarnings io.Writer
	// Certs say which certificates to reissue whatever their state.
	Certs certs.Options
	// Rotation is set for a CA rotation: the other runs are refused while
	// one is in progress.
	Rotation bool
	// AnyHost goes on without the hosts that cannot be reached.
	AnyHost bool
	// ControlPlane reaches the control-plane hosts too.
	ControlPlane bool
	// Images are the image archives to import from; nil for none.
	Images *images.Set
}

// Session is an open run: the inventory, its runtime, the PKI worked out in
// memory, the hosts' transports and an etcd client.
type Session struct {
	Cluster *config.Cluster
	Runtime runtime.Runtime
	PKI     *certs.PKI
	// Events say what the PKI's computation made or would make.
	Events []certs.Event
	Hosts  *hosts.Hosts
	// Unreachable are the hosts that could not be reached (AnyHost).
	Unreachable map[string]error
	// Etcd is nil while the PKI has no CA.
	Etcd    *etcdclient.Client
	Log     *progress.Log
	Images  *images.Set
	opts    Options
	release []func()
	// stamp names the run's backup directory on the hosts: one for the
	// whole run, however many plans it executes.
	stamp string
	// restore is this machine's record of a restore not finished; nil
	// for none.
	restore *snapshot.Record
	// held say whether the run still holds the hosts it locked.
	held []func() error
}

// Open works out the PKI in memory (nothing is saved), connects to the
// hosts and prepares an etcd client; the caller closes the session.
func Open(ctx context.Context, c *config.Cluster, o Options) (*Session, error) {
	if certs.RotationInProgress(c) && !o.Rotation {
		return nil, fmt.Errorf("a CA rotation is in progress (%s exists in %s): finish it with 'etcdadm certs rotate-ca', or go back with 'etcdadm certs rotate-ca --abort'", certs.NewCABaseName+".crt", c.PKIDir())
	}
	if o.Log == nil {
		o.Log = progress.NewLog(nil)
	}
	s := &Session{Cluster: c, Runtime: RuntimeFor(c), Log: o.Log, Images: o.Images, opts: o, stamp: execute.Stamp(time.Now())}
	if o.LockPKI {
		release, err := certs.Lock(c.PKIDir())
		if err != nil {
			return nil, err
		}
		s.release = append(s.release, release)
	}
	if err := certs.CheckKeyModes(c.PKIDir(), o.LockPKI, o.KeyWarnings); err != nil {
		s.Close()
		return nil, err
	}
	var err error
	if s.restore, err = snapshot.ReadRecord(snapshot.Dir(c)); err != nil {
		s.Close()
		return nil, err
	}
	if s.PKI, s.Events, err = certs.Compute(c, o.Certs); err != nil {
		s.Close()
		return nil, err
	}
	targets := c.Spec.Hosts
	if o.ControlPlane {
		targets = c.AllHosts()
	}
	if o.AnyHost {
		s.Hosts, s.Unreachable = hosts.ConnectAny(ctx, targets, o.Connect, o.Concurrency, o.Log)
	} else if s.Hosts, err = hosts.Connect(ctx, targets, o.Connect, o.Concurrency, o.Log); err != nil {
		s.Close()
		return nil, err
	}
	if !s.PKI.CACreated {
		if err := s.connectEtcd(s.PKI); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// connectEtcd authenticates to the members as the first host's
// healthcheck client of pki.
func (s *Session) connectEtcd(pki *certs.PKI) error {
	cli, err := etcdclient.FromPKI(pki, s.Cluster.Spec.Hosts[0].Name, hosts.TunnelDialer(s.Hosts))
	if err != nil {
		return err
	}
	if s.Etcd != nil {
		s.Etcd.Close()
	}
	s.Etcd = cli
	return nil
}

// Close lets the hosts, the members and the PKI go.
func (s *Session) Close() {
	if s.Etcd != nil {
		s.Etcd.Close()
	}
	if s.Hosts != nil {
		s.Hosts.Close()
	}
	for i := len(s.release) - 1; i >= 0; i-- {
		s.release[i]()
	}
	s.release = nil
}

// Gather reads the facts of the hosts and of etcd (when its CA is known);
// with lock, every host is locked for this run until the session closes.
func (s *Session) Gather(ctx context.Context, lock bool) (*gather.Facts, error) {
	f, err := gather.Gather(ctx, s.Cluster, s.Runtime, s.Hosts, s.Etcd, gather.Options{Concurrency: s.opts.Concurrency, Lock: lock, EtcdTimeout: s.opts.EtcdTimeout})
	if err != nil {
		return nil, err
	}
	s.release = append(s.release, f.Release)
	s.held = append(s.held, f.Held)
	return f, nil
}

// holdsHosts is nil while the run holds every host it locked, else why
// not: the executor checks it before each change.
func (s *Session) holdsHosts() error {
	for _, held := range s.held {
		if err := held(); err != nil {
			return err
		}
	}
	return nil
}

// Input is what a plan is made from: the session and the facts, at now.
func (s *Session) Input(f *gather.Facts, now time.Time) plan.Input {
	return plan.Input{Cluster: s.Cluster, Runtime: s.Runtime, PKI: s.PKI, Hosts: f.Hosts, Etcd: f.Etcd, Images: s.Images, Now: now, Restore: s.restore}
}

// NeedEtcd refuses a run that must reach etcd without the CA to.
func (s *Session) NeedEtcd(why string) error {
	if s.Etcd == nil {
		return fmt.Errorf("%s has no etcd CA: %s; copy the PKI from where it was created", s.PKI.Dir, why)
	}
	return nil
}
