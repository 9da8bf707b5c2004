package app

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/pipeline"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
)

// changeFlags are the flags of the commands that change membership.
type changeFlags struct {
	sshFlags
	planFlags
	yes           bool
	dryRun        bool
	healthTimeout time.Duration
	// healthGate is bound by the commands that restart members one at a
	// time; zero is the executor's default.
	healthGate time.Duration
}

func (f *changeFlags) bind(cmd *cobra.Command) {
	f.sshFlags.bind(cmd)
	f.sshFlags.bindKeepBackups(cmd)
	f.planFlags.bind(cmd)
	cmd.Flags().BoolVarP(&f.yes, "yes", "y", false, "do not ask for confirmation (for scripts)")
	cmd.Flags().BoolVar(&f.dryRun, "dry-run", false, "print the plan, changing nothing anywhere")
	cmd.Flags().DurationVar(&f.healthTimeout, "health-timeout", 5*time.Minute, "how long to wait for a member or the cluster to be healthy")
}

func newMemberCommand(streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "member",
		Short: "Change the cluster's membership",
	}
	cmd.AddCommand(newMemberRemoveCommand(streams), newMemberReplaceCommand(streams), newMemberMoveCommand(streams))
	return cmd
}

func newMemberRemoveCommand(streams Streams) *cobra.Command {
	f := &changeFlags{}
	cmd := &cobra.Command{
		Use:   "remove NAME -f cluster.yaml",
		Short: "Remove a member from the cluster by ID and clean its host",
		Long: `remove takes member NAME (an inventory host, or a member's name or hex ID) out of the
cluster through the other members, after handing leadership over if it leads. It is
refused if the others could not keep quorum. The removal is by member ID, so it works
when the host is down; a host that can be reached is then cleaned: its etcd stopped and
its data directory, manifest, certificates and kubelet files moved under
/var/lib/etcdadm/backup. Afterwards, remove the host from the inventory.`,
		Args: exactlyOneName,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMembership(cmd.Context(), streams, f, "remove member "+args[0], func(in plan.Input) (*plan.Plan, error) {
				return plan.Remove(in, args[0])
			})
		},
	}
	f.bind(cmd)
	return cmd
}

func newMemberReplaceCommand(streams Streams) *cobra.Command {
	f := &changeFlags{}
	var force bool
	cmd := &cobra.Command{
		Use:   "replace NAME -f cluster.yaml",
		Short: "Replace a failed member: remove its stale ID, then add it again as a learner and promote it",
		Long: `replace is for a member whose host failed (a dead disk, a re-imaged machine) and came
back with the same name, at the same address or at the new one the inventory gives.
It removes the failed member's ID, moves what is left of its data aside, then adds the
host as a learner with --initial-cluster-state=existing, waits until it caught up and
promotes it. It is refused while the member is healthy (--force) or when the others
could not keep quorum.`,
		Args: exactlyOneName,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMembership(cmd.Context(), streams, f, "replace member "+args[0], func(in plan.Input) (*plan.Plan, error) {
				return plan.Replace(in, args[0], force)
			})
		},
	}
	f.bind(cmd)
	cmd.Flags().BoolVar(&force, "force", false, "replace the member even if it is healthy")
	return cmd
}

func newMemberMoveCommand(streams Streams) *cobra.Command {
	f := &changeFlags{}
	cmd := &cobra.Command{
		Use:   "move NAME -f cluster.yaml",
		Short: "Move a member to the new address the inventory gives it, keeping its ID and its data",
		Long: `move is for a member whose machine changes: write its new address in the inventory
(same name), then run it. The old address is the member's peer URL in the member list;
the old host is reached there over SSH, with the inventory's SSH settings for NAME.
etcd stops on the old host (its manifest kept under /var/lib/etcdadm/backup); its data
directory streams to the new host through this machine, its sha256 checked on both
hosts; the member's peer URL changes through the other members, which keep quorum; etcd
starts on the new host with certificates for the new address, with the same member ID
and data; the old host's etcd files, its data included, go under its backup directory.
It is refused when the other members could not keep quorum without it, and when the
old host cannot be reached (replace the member then: 'etcdadm member replace NAME').`,
		Args: exactlyOneName,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runChange(cmd.Context(), streams, f, "move member "+args[0], func(ctx context.Context, s *pipeline.Session, o pipeline.ConvergeOptions, h pipeline.Hooks) (*pipeline.Outcome, error) {
				return pipeline.Move(ctx, s, args[0], o, h)
			}, printMembers(cmd.Context(), f))
		},
	}
	f.bind(cmd)
	return cmd
}

func newResetCommand(streams Streams) *cobra.Command {
	f := &changeFlags{}
	cmd := &cobra.Command{
		Use:   "reset NAME -f cluster.yaml",
		Short: "Clean a host that is no longer a member, keeping a backup",
		Long: `reset stops etcd on host NAME and moves its data directory, manifest, certificates,
kubeadmcfg.yaml and kubelet files under /var/lib/etcdadm/backup, then stops the kubelet
that ran only etcd. It is refused while NAME is a member of the cluster: remove it first.`,
		Args: exactlyOneName,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMembership(cmd.Context(), streams, f, "reset "+args[0], func(in plan.Input) (*plan.Plan, error) {
				return plan.Reset(in, args[0])
			})
		},
	}
	f.bind(cmd)
	return cmd
}

func exactlyOneName(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return &usageError{fmt.Errorf("%s takes one member or host name, got %d arguments\nsee '%s --help'", cmd.CommandPath(), len(args), cmd.CommandPath())}
	}
	return nil
}

// runMembership reads the facts, plans with build, asks, runs, and prints
// the members.
func runMembership(ctx context.Context, streams Streams, f *changeFlags, what string, build func(plan.Input) (*plan.Plan, error)) error {
	return runChange(ctx, streams, f, what, change(build), printMembers(ctx, f))
}

// runFunc is the pipeline function a command that changes the cluster runs.
type runFunc func(context.Context, *pipeline.Session, pipeline.ConvergeOptions, pipeline.Hooks) (*pipeline.Outcome, error)

// change runs the plan build makes (pipeline.Change).
func change(build func(plan.Input) (*plan.Plan, error)) runFunc {
	return func(ctx context.Context, s *pipeline.Session, o pipeline.ConvergeOptions, h pipeline.Hooks) (*pipeline.Outcome, error) {
		return pipeline.Change(ctx, s, build, o, h)
	}
}

// printMembers reports the cluster's members after a run.
func printMembers(ctx context.Context, f *changeFlags) func(*pipeline.Session, *pipeline.Outcome, *summary) {
	return func(s *pipeline.Session, _ *pipeline.Outcome, sum *summary) {
		if list, err := s.Etcd.MemberList(ctx, ops.ClientURLs(s.Cluster), f.etcdTimeout); err == nil {
			sum.printf("cluster: %d member(s): %s", len(list.Members), describeMembers(list.Members))
		}
	}
}

// runChange runs a command that changes the cluster: run reads the facts,
// plans, asks (on a terminal, or --yes) and runs; when it succeeded, report
// says what it did.
func runChange(ctx context.Context, streams Streams, f *changeFlags, what string, run runFunc, report func(*pipeline.Session, *pipeline.Outcome, *summary)) error {
	if err := f.check(); err != nil {
		return err
	}
	if !f.yes && !f.dryRun && !isTerminal(streams) {
		return fmt.Errorf("refusing to %s without confirmation: run it on a terminal, or pass --yes", what)
	}
	if f.keepBackups < 0 {
		return &usageError{fmt.Errorf("invalid value %d for --keep-backups: use 0 (keep all) or more", f.keepBackups)}
	}
	s, err := f.open(ctx, streams, progress.NewLog(streams.progress()), openOptions{Options: pipeline.Options{LockPKI: !f.dryRun, AnyHost: true, ControlPlane: true}})
	if err != nil {
		return err
	}
	defer s.Close()
	sum := newSummary(streams, f.output)
	o := pipeline.ConvergeOptions{DryRun: f.dryRun, ExecOptions: pipeline.ExecOptions{HealthTimeout: f.healthTimeout, HealthGate: f.healthGate, KeepBackups: f.keepBackups}}
	out, err := run(ctx, s, o, pipeline.Hooks{
		Confirm: func(p *plan.Plan) error {
			return confirmPlan(ctx, streams, f.yes, sum, p, fmt.Sprintf("%s of cluster %s?", what, s.Cluster.Metadata.Name), what)
		},
		Saved: func(events []certs.Event) { printCertEvents(streams, events, false) },
	})
	switch {
	case out == nil || out.Plan == nil:
		return err
	case f.dryRun:
		if err != nil {
			return err
		}
		return f.print(streams, out.Plan)
	case out.Result == nil && err == nil:
		sum.warn(out.Plan.Warnings)
		sum.printf("nothing to do")
		return sum.done(nil)
	case out.Result == nil:
		return err
	}
	sum.add(out.Result)
	if err != nil {
		return sum.done(err)
	}
	report(s, out, sum)
	return sum.done(nil)
}

// confirmPlan reports the plan's warnings, then, unless yes, shows the
// plan and asks the question: a no stops the run with nothing changed.
func confirmPlan(ctx context.Context, streams Streams, yes bool, sum *summary, p *plan.Plan, question, what string) error {
	sum.warn(p.Warnings)
	if yes {
		return nil
	}
	plan.WriteText(streams.ErrOut, p)
	ok, err := confirm(ctx, streams, question)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s: not confirmed, nothing changed", what)
	}
	return nil
}

func describeMembers(ms []etcdclient.Member) string {
	var parts []string
	for _, m := range ms {
		kind := ""
		if m.Learner {
			kind = ", learner"
		}
		parts = append(parts, fmt.Sprintf("%s (%s%s)", m.Name, m.HexID(), kind))
	}
	return strings.Join(parts, ", ")
}

func isTerminal(streams Streams) bool {
	in, ok := streams.In.(*os.File)
	return ok && term.IsTerminal(int(in.Fd()))
}

// confirm asks a yes/no question on the terminal; only "y" or "yes" agree.
// The run's end (Ctrl-C) ends the question: nothing is changed.
func confirm(ctx context.Context, streams Streams, question string) (bool, error) {
	fmt.Fprintf(streams.ErrOut, "%s [y/N] ", question)
	type answer struct {
		line string
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		line, err := bufio.NewReader(streams.In).ReadString('\n')
		got <- answer{line, err}
	}()
	select {
	case <-ctx.Done():
		fmt.Fprintln(streams.ErrOut)
		return false, fmt.Errorf("not confirmed, nothing changed: %w", context.Cause(ctx))
	case a := <-got:
		if a.err != nil && a.line == "" {
			return false, fmt.Errorf("read the answer: %w", a.err)
		}
		s := strings.ToLower(strings.TrimSpace(a.line))
		return s == "y" || s == "yes", nil
	}
}
