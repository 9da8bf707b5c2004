package app

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/pipeline"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
)

func newCertsRotateCACommand(streams Streams) *cobra.Command {
	f := &sshFlags{}
	pf := &planFlags{}
	var abort, dryRun bool
	var until string
	var healthTimeout, healthGate time.Duration
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
			if err := checkHealthGate(healthGate); err != nil {
				return err
			}
			return rotateCA(cmd.Context(), streams, f, pf, abort, dryRun, last, pipeline.ExecOptions{HealthTimeout: healthTimeout, HealthGate: healthGate, KeepBackups: f.keepBackups})
		},
	}
	f.bind(cmd)
	f.bindKeepBackups(cmd)
	pf.bind(cmd)
	cmd.Flags().BoolVar(&abort, "abort", false, "move the cluster back to the CA it is rotating from")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the next stage, changing nothing anywhere")
	cmd.Flags().StringVar(&until, "until", "c", "stop after this stage (a, b or c), to restart the etcd clients in between; run again to go on")
	cmd.Flags().DurationVar(&healthTimeout, "health-timeout", 5*time.Minute, "how long to wait for a member or the cluster to be healthy")
	bindHealthGate(cmd, &healthGate)
	return cmd
}

func rotateCA(ctx context.Context, streams Streams, f *sshFlags, pf *planFlags, abort, dryRun bool, until plan.RotationStage, exec pipeline.ExecOptions) (err error) {
	if !dryRun && f.keepBackups < 0 {
		return &usageError{fmt.Errorf("invalid value %d for --keep-backups: use 0 (keep all) or more", f.keepBackups)}
	}
	s, err := f.open(ctx, streams, progress.NewLog(streams.progress()), openOptions{Options: pipeline.Options{LockPKI: !dryRun, Rotation: true, ControlPlane: true}})
	if err != nil {
		return err
	}
	defer s.Close()
	sum := newSummary(streams, pf.output)
	o := pipeline.RotateOptions{Abort: abort, Until: until,
		ConvergeOptions: pipeline.ConvergeOptions{DryRun: dryRun, ExecOptions: exec}}
	out, err := pipeline.RotateCA(ctx, s, o, pipeline.Hooks{Saved: func(events []certs.Event) { printCertEvents(streams, events, false) }})
	if dryRun {
		if out != nil && out.Plan != nil {
			printCertEvents(streams, out.Events, true)
			if perr := pf.print(streams, out.Plan); perr != nil {
				return perr
			}
		}
		if err == nil && out.Done != "" {
			sum.printf("%s", out.Done)
			if pf.output == "json" {
				// A dry run asked for JSON prints a plan without stages.
				return pf.print(streams, &plan.Plan{Cluster: s.Cluster.Metadata.Name, Topology: s.Cluster.Spec.Topology})
			}
		}
		return err
	}
	// What the stages did is reported however the run ends.
	defer func() { err = sum.done(err) }()
	if out != nil {
		sum.add(out.Result)
		if out.Done != "" {
			sum.printf("%s", out.Done)
		}
	}
	return err
}
