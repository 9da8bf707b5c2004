package pipeline

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/gather"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
)

// RotateOptions tune RotateCA.
type RotateOptions struct {
	ConvergeOptions
	// Abort goes back to the CA the rotation started from.
	Abort bool
	// Until is the last stage to run.
	Until plan.RotationStage
}

// RotateOutcome is what a rotation did.
type RotateOutcome struct {
	Outcome
	// Events are what the last planned stage's PKI made.
	Events []certs.Event
	// Done says how the rotation ended, or where it stopped.
	Done string
}

// RotateCA moves the cluster to a new etcd CA (or back, with Abort) in
// rolling stages, each planned from the hosts as the last one left them,
// so that a cut rotation goes on when run again. A dry run plans the next
// stage only.
func RotateCA(ctx context.Context, s *Session, o RotateOptions, h Hooks) (*RotateOutcome, error) {
	out := &RotateOutcome{}
	now := time.Now()
	var r *certs.Rotation
	var err error
	if o.Abort {
		if r, err = certs.LoadRotation(s.Cluster, now); err != nil {
			return out, err
		}
		if r == nil {
			return out, fmt.Errorf("no CA rotation is in progress in %s: nothing to abort", s.Cluster.PKIDir())
		}
	} else if r, err = certs.StartRotation(s.Cluster, now); err != nil {
		return out, err
	}
	target, other := r.New, r.Current
	move := plan.CAMove{Target: r.New.Cert, Other: r.Current.Cert, TargetName: "the new CA", OtherName: "the old CA"}
	if o.Abort {
		target, other = r.Current, r.New
		move = plan.CAMove{Target: r.Current.Cert, Other: r.New.Cert, TargetName: "the old CA", OtherName: "the new CA"}
	}
	// A new CA is saved once the first stage has passed its guards, right
	// before anything is written: a refused rotation leaves no rotation in
	// progress behind.
	saveCA := func() error {
		if !r.Created {
			return nil
		}
		if err := r.Save(s.Cluster); err != nil {
			return err
		}
		s.Log.Printf("[certs] new etcd CA %s in %s (sha256 %s)", target.Cert.Subject, certs.NewCABaseName, plan.Fingerprint(target.Cert))
		return nil
	}
	for {
		f, err := gather.Gather(ctx, s.Cluster, s.Runtime, s.Hosts, nil, gather.Options{Concurrency: s.opts.Concurrency, Lock: !o.DryRun})
		if err != nil {
			return out, err
		}
		s.held = append(s.held, f.Held)
		stage, why := plan.Rotation(plan.Input{Cluster: s.Cluster, Runtime: s.Runtime, Hosts: f.Hosts, Now: now}, move)
		switch {
		case stage > o.Until && stage != plan.RotationDone:
			f.Release()
			out.Done = fmt.Sprintf("rotation stopped before stage %s, as asked: run rotate-ca again to go on", move.Describe(stage))
			return out, nil
		case stage == plan.RotationDone && o.DryRun:
			f.Release()
			out.Done = "rotation: " + why
			return out, nil
		case stage == plan.RotationDone:
			f.Release()
			out.Done, err = finishRotation(s, r, o.Abort, why)
			return out, err
		}
		issuer := target
		if stage == plan.TrustBoth && !allLeavesBy(s, f, target) {
			issuer = other
		}
		err = s.rotationStage(ctx, f, out, issuer, target, other, stage, move.Describe(stage), why, o, h, saveCA)
		f.Release()
		if err != nil || o.DryRun {
			return out, err
		}
	}
}

// rotationStage plans one stage from fresh facts, with a PKI whose leaves
// issuer signs and whose bundle trusts target (and other, but in the last
// stage), and runs it; saveCA comes right before the first write.
func (s *Session) rotationStage(ctx context.Context, f *gather.Facts, out *RotateOutcome, issuer, target, other certs.CA, stage plan.RotationStage, name, why string, o RotateOptions, h Hooks, saveCA func() error) error {
	pki, events, err := certs.Compute(s.Cluster, certs.Options{Issuer: &issuer})
	if err != nil {
		return err
	}
	pki.ForRotation(target, other, stage != plan.DropOther)
	// This stage's members trust what its PKI says.
	if err := s.connectEtcd(pki); err != nil {
		return err
	}
	f.Etcd = gather.Etcd(ctx, s.Cluster, f, s.Etcd, s.opts.EtcdTimeout)
	in := s.Input(f, time.Now())
	in.PKI = pki
	out.Facts, out.Events = f, events
	out.Plan, err = plan.Build(in)
	if err == nil {
		err = OnlyCertificates(out.Plan)
	}
	s.Log.Printf("[rotate-ca] stage %s: %s", name, why)
	if err != nil || o.DryRun {
		return err
	}
	if out.Plan.Empty() {
		return fmt.Errorf("stage %s has nothing to change on the hosts, yet the hosts are not past it: %s", name, why)
	}
	if err := saveCA(); err != nil {
		return err
	}
	if err := s.savePKI(pki, events, h); err != nil {
		return err
	}
	res, err := s.executePlan(ctx, out.Plan, o.ExecOptions)
	if out.Result == nil {
		out.Result = res
	} else if res != nil {
		out.Result.Add(res)
	}
	if err != nil {
		return err
	}
	s.Log.Printf("[rotate-ca] stage %s done", name)
	return nil
}

func allLeavesBy(s *Session, f *gather.Facts, ca certs.CA) bool {
	for name, hf := range f.Hosts {
		if !plan.LeavesIssuedBy(s.Cluster, name, hf, ca.Cert) {
			return false
		}
	}
	return true
}

func finishRotation(s *Session, r *certs.Rotation, abort bool, why string) (string, error) {
	if abort {
		kept, err := r.Abort(s.Cluster)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("rotation aborted: %s; the new CA is kept at %s", why, kept), nil
	}
	kept, err := r.Finish(s.Cluster)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("rotation done: %s; it is now %s in %s, the old one is kept at %s", why, certs.CABaseName, s.Cluster.PKIDir(), kept), nil
}

// OnlyCertificates refuses a plan that would also change other files than
// certificates: those are apply's to make, after review. A start file a
// cut run's restart took away (its host's pending restart is cleared by
// the plan) is put back: that run's own work.
func OnlyCertificates(p *plan.Plan) error {
	var others []string
	for _, h := range p.Hosts {
		for _, ch := range h.Changed() {
			if ch.File.Part == plan.PartCerts || ch.File.Part == plan.PartManifests && ch.Kind == plan.Create && restartPending(p, h.Name) {
				continue
			}
			others = append(others, h.Name+":"+ch.Path)
		}
	}
	if len(others) > 0 {
		return fmt.Errorf("the hosts differ from the inventory in more than certificates (%s): review them with 'etcdadm diff' and run 'etcdadm apply' first", strings.Join(others, ", "))
	}
	return nil
}

// restartPending reports whether the plan clears host's pending restart.
func restartPending(p *plan.Plan, host string) bool {
	for _, st := range p.Stages {
		for _, ho := range st.Hosts {
			if ho.Host != host {
				continue
			}
			for _, op := range ho.Ops {
				if u, ok := op.(ops.Unmark); ok && u.Marker == facts.PendingEtcdRestart {
					return true
				}
			}
		}
	}
	return false
}
