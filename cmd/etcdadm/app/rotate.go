package app

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/execute"
	"github.com/etcdadm-io/etcdadm/pkg/gather"
	"github.com/etcdadm-io/etcdadm/pkg/hosts"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
)

func newCertsRotateCACommand(streams Streams) *cobra.Command {
	f := &sshFlags{}
	pf := &planFlags{}
	var abort, dryRun bool
	var until string
	var healthTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "rotate-ca -f cluster.yaml [--abort]",
		Short: "Move the cluster to a new etcd CA without downtime, in three rolling stages",
		Long: `rotate-ca makes a new etcd CA (kept as etcd/ca-new in spec.pki.dir) and moves the
cluster to it in three stages, each a rolling restart, one member at a time, leader last,
each member healthy and caught up before the next:

  (a) trust both: every host's ca.crt holds the new CA first, then the old one (stacked
      hosts get the new ca.key, since kubeadm takes the first CA of ca.crt);
  (b) move the leaves: every member certificate is reissued by the new CA;
  (c) drop the old CA: ca.crt holds the new CA only.

etcd reads its CA file only when it starts, hence the restarts. The stage is read from
the hosts (which CAs they trust, who issued their certificates), so a rotation that was
cut short goes on when run again. --abort moves the cluster back to the old CA from any
stage, the same way. When the rotation is done, the new CA becomes etcd/ca in
spec.pki.dir and the old one is kept under backup/ there.

The control-plane hosts of spec.controlPlane.hosts go through the same stages: their
ca.crt is the bundle in (a) and the new CA alone in (c), and their apiserver-etcd-client
is reissued in (b). Every kube-apiserver reads --etcd-cafile only when it starts:
restart it after stage (a) (--until a) and again after stage (c).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := pf.check(); err != nil {
				return err
			}
			last, ok := map[string]plan.RotationStage{"a": plan.TrustBoth, "b": plan.MoveLeaves, "c": plan.DropOther}[until]
			if !ok {
				return &usageError{fmt.Errorf("invalid value %q for --until: use a, b or c", until)}
			}
			return rotateCA(cmd.Context(), streams, f, pf, abort, dryRun, last, healthTimeout)
		},
	}
	f.bind(cmd)
	f.bindKeepBackups(cmd)
	pf.bind(cmd)
	cmd.Flags().BoolVar(&abort, "abort", false, "move the cluster back to the CA it is rotating from")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the next stage, changing nothing anywhere")
	cmd.Flags().StringVar(&until, "until", "c", "stop after this stage (a, b or c), to restart the etcd clients in between; run again to go on")
	cmd.Flags().DurationVar(&healthTimeout, "health-timeout", 5*time.Minute, "how long to wait for a member or the cluster to be healthy")
	return cmd
}

func rotateCA(ctx context.Context, streams Streams, f *sshFlags, pf *planFlags, abort, dryRun bool, until plan.RotationStage, healthTimeout time.Duration) (err error) {
	s, err := f.open(ctx, streams, progress.NewLog(streams.progress()), openOptions{lockPKI: !dryRun, rotation: true, controlPlane: true})
	if err != nil {
		return err
	}
	defer s.close()
	log := streams.progress()
	sum := newSummary(streams, pf.output)
	if !dryRun {
		// What the stages did is reported however the run ends.
		defer func() { err = sum.done(err) }()
	}
	now := time.Now()
	var r *certs.Rotation
	if abort {
		if r, err = certs.LoadRotation(s.cluster, now); err != nil {
			return err
		}
		if r == nil {
			return fmt.Errorf("no CA rotation is in progress in %s: nothing to abort", s.cluster.PKIDir())
		}
	} else if r, err = certs.StartRotation(s.cluster, now); err != nil {
		return err
	}
	target, other := r.New, r.Current
	move := plan.CAMove{Target: r.New.Cert, Other: r.Current.Cert, TargetName: "the new CA", OtherName: "the old CA"}
	if abort {
		target, other = r.Current, r.New
		move = plan.CAMove{Target: r.Current.Cert, Other: r.New.Cert, TargetName: "the old CA", OtherName: "the new CA"}
	}
	if r.Created && !dryRun {
		if err := r.Save(s.cluster); err != nil {
			return err
		}
		log.Info(fmt.Sprintf("[certs] new etcd CA %s in %s (sha256 %s)", target.Cert.Subject, certs.NewCABaseName, plan.Fingerprint(target.Cert)))
	}
	for {
		facts, err := gather.Gather(ctx, s.cluster, s.rt, s.hosts, nil, gather.Options{Concurrency: f.concurrency, Lock: !dryRun})
		if err != nil {
			return err
		}
		in := plan.Input{Cluster: s.cluster, Runtime: s.rt, Hosts: facts.Hosts, Now: now}
		stage, why := plan.Rotation(in, move)
		if stage > until && stage != plan.RotationDone {
			facts.Release()
			sum.printf("rotation stopped before stage %s, as asked: run rotate-ca again to go on", move.Describe(stage))
			return nothingPlanned(streams, s, pf, dryRun)
		}
		if stage == plan.RotationDone {
			facts.Release()
			if dryRun {
				sum.printf("rotation: %s", why)
				return nothingPlanned(streams, s, pf, dryRun)
			}
			return finishRotation(s, r, abort, why, sum)
		}
		issuer := target
		if stage == plan.TrustBoth && !allLeavesBy(s.cluster, facts, target) {
			issuer = other
		}
		pki, events, err := certs.Compute(s.cluster, certs.Options{Issuer: &issuer})
		if err != nil {
			facts.Release()
			return err
		}
		pki.ForRotation(target, other, stage != plan.DropOther)
		client, err := etcdclient.FromPKI(pki, s.cluster.Spec.Hosts[0].Name, hosts.TunnelDialer(s.hosts))
		if err != nil {
			facts.Release()
			return err
		}
		err = rotationStage(ctx, streams, s, pki, events, client, facts, move.Describe(stage), why, pf, dryRun, healthTimeout, f, sum)
		client.Close()
		facts.Release()
		if err != nil || dryRun {
			return err
		}
	}
}

// rotationStage plans one stage from fresh facts and runs it.
func rotationStage(ctx context.Context, streams Streams, s *session, pki *certs.PKI, events []certs.Event, client *etcdclient.Client, facts *gather.Facts,
	stage, why string, pf *planFlags, dryRun bool, healthTimeout time.Duration, f *sshFlags, sum *summary) error {
	e := gather.Etcd(ctx, s.cluster, facts, client, f.etcdTimeout)
	p, err := plan.Build(plan.Input{Cluster: s.cluster, Runtime: s.rt, PKI: pki, Hosts: facts.Hosts, Etcd: e, Now: time.Now()})
	if err == nil {
		err = onlyCertificates(p)
	}
	streams.progress().Info(fmt.Sprintf("[rotate-ca] stage %s: %s", stage, why))
	if dryRun {
		if p != nil {
			printCertEvents(streams, events, true)
			if perr := pf.print(streams, p); perr != nil {
				return perr
			}
		}
		return err
	}
	if err != nil {
		return err
	}
	if p.Empty() {
		return fmt.Errorf("stage %s has nothing to change on the hosts, yet the hosts are not past it: %s", stage, why)
	}
	if err := pki.Save(); err != nil {
		return err
	}
	printCertEvents(streams, events, false)
	x := &execute.Executor{Cluster: s.cluster, Runtime: s.rt, Hosts: s.hosts, Etcd: client, Log: s.log, HealthTimeout: healthTimeout, Concurrency: f.concurrency, KeepBackups: f.keepBackups}
	res, err := x.Run(ctx, p)
	sum.add(res)
	if err != nil {
		return err
	}
	streams.progress().Info(fmt.Sprintf("[rotate-ca] stage %s done", stage))
	return nil
}

// nothingPlanned ends a run with no stage left to run: a dry run asked
// for JSON prints a plan without stages.
func nothingPlanned(streams Streams, s *session, pf *planFlags, dryRun bool) error {
	if dryRun && pf.output == "json" {
		return pf.print(streams, &plan.Plan{Cluster: s.cluster.Metadata.Name, Topology: s.cluster.Spec.Topology})
	}
	return nil
}

func allLeavesBy(c *config.Cluster, f *gather.Facts, ca certs.CA) bool {
	for name, hf := range f.Hosts {
		if !plan.LeavesIssuedBy(c, name, hf, ca.Cert) {
			return false
		}
	}
	return true
}

func finishRotation(s *session, r *certs.Rotation, abort bool, why string, sum *summary) error {
	if abort {
		kept, err := r.Abort(s.cluster)
		if err != nil {
			return err
		}
		sum.printf("rotation aborted: %s; the new CA is kept at %s", why, kept)
		return nil
	}
	kept, err := r.Finish(s.cluster)
	if err != nil {
		return err
	}
	sum.printf("rotation done: %s; it is now %s in %s, the old one is kept at %s", why, certs.CABaseName, s.cluster.PKIDir(), kept)
	return nil
}
