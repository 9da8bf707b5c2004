package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/execute"
	"github.com/etcdadm-io/etcdadm/pkg/hosts"
	"github.com/etcdadm-io/etcdadm/pkg/pipeline"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
	"github.com/etcdadm-io/etcdadm/pkg/status"
)

// PassphraseEnv holds the passphrase of encrypted SSH keys, for unattended runs.
const PassphraseEnv = "ETCDADM_SSH_PASSPHRASE"

type sshFlags struct {
	inventoryFlags
	acceptNewHostKeys bool
	sshConfig         string
	concurrency       int
	connectTimeout    time.Duration
	commandTimeout    time.Duration
	etcdTimeout       time.Duration
	askPassword       bool
	keepBackups       int
}

// bindHealthGate adds --health-gate to a command that restarts members one
// at a time.
func bindHealthGate(cmd *cobra.Command, d *time.Duration) {
	cmd.Flags().DurationVar(d, "health-gate", execute.DefaultHealthGate, "how long a restarted member has to run its new etcd and answer before it is put back on its old manifest or unit; also how long a member a cut run was restarting is waited for")
}

// checkHealthGate refuses a --health-gate that could never be met.
func checkHealthGate(d time.Duration) error {
	if d <= 0 {
		return &usageError{fmt.Errorf("invalid value %s for --health-gate: use a positive duration, e.g. 60s", d)}
	}
	return nil
}

// bindKeepBackups adds --keep-backups to a command that changes hosts.
func (f *sshFlags) bindKeepBackups(cmd *cobra.Command) {
	cmd.Flags().IntVar(&f.keepBackups, "keep-backups", execute.DefaultKeepBackups, "how many runs' backups each host keeps under "+execute.DefaultBackupDir+" (older ones are removed after a run that changed the host; 0 keeps all)")
}

func (f *sshFlags) bind(cmd *cobra.Command) {
	f.inventoryFlags.bind(cmd)
	cmd.Flags().BoolVar(&f.acceptNewHostKeys, "accept-new-host-keys", false, "trust and record the key of a host known_hosts does not know yet (a changed key is always refused)")
	cmd.Flags().StringVar(&f.sshConfig, "ssh-config", "", `ssh client configuration to honour (default ~/.ssh/config; "none" for none)`)
	cmd.Flags().IntVar(&f.concurrency, "concurrency", 32, "how many hosts to work on at once")
	cmd.Flags().DurationVar(&f.connectTimeout, "connect-timeout", 15*time.Second, "SSH connection timeout per attempt")
	cmd.Flags().DurationVar(&f.commandTimeout, "command-timeout", 2*time.Minute, "timeout of each command and file operation on a host")
	cmd.Flags().DurationVar(&f.etcdTimeout, "etcd-timeout", 3*time.Second, "timeout of each call to etcd")
	cmd.Flags().BoolVar(&f.askPassword, "ask-password", false, "allow SSH password authentication, asking on the terminal (keys and ssh-agent are tried first)")
}

type openOptions struct {
	pipeline.Options
	// withImages reads the image archives of --images (images) or
	// spec.images.dir before any host is reached, refusing a bad one.
	withImages bool
	images     string
}

// open loads the inventory and opens a run's session (see pipeline.Open);
// the caller closes it.
func (f *sshFlags) open(ctx context.Context, streams Streams, log *progress.Log, o openOptions) (*pipeline.Session, error) {
	if f.concurrency < 1 {
		return nil, &usageError{fmt.Errorf("invalid value %d for --concurrency: use 1 or more", f.concurrency)}
	}
	c, err := f.load(streams)
	if err != nil {
		return nil, err
	}
	if o.withImages {
		if o.Images, err = imageArchives(c, o.images, streams.progress()); err != nil {
			return nil, err
		}
	}
	if o.Connect, err = f.connector(ctx, c, streams, log.Logger()); err != nil {
		return nil, err
	}
	o.Log, o.KeyWarnings, o.Concurrency, o.EtcdTimeout = log, streams.ErrOut, f.concurrency, f.etcdTimeout
	return pipeline.Open(ctx, c, o.Options)
}

// connector dials the hosts with the run's logger: each command and file
// operation is traced at debug level, for --verbose. The SSH settings it
// uses are checked first, before any host is reached.
func (f *sshFlags) connector(ctx context.Context, c *config.Cluster, streams Streams, log *slog.Logger) (hosts.Connector, error) {
	if err := c.CheckSSHFiles(); err != nil {
		return nil, err
	}
	tty := remote.NewTerminal(streams.In, streams.ErrOut)
	base := remote.Config{
		AcceptNewHostKeys: f.acceptNewHostKeys,
		SSHConfigFile:     f.sshConfig,
		ConnectTimeout:    f.connectTimeout,
		PassphraseEnv:     PassphraseEnv,
		PassphrasePrompt:  passphrasePrompt(ctx, tty),
		KeyCache:          &remote.KeyCache{},
		Logger:            log,
	}
	if f.askPassword {
		if tty == nil {
			return nil, &usageError{fmt.Errorf("--ask-password needs a terminal on standard input")}
		}
		base.AllowPassword = true
		base.Password = func(host, user string) ([]byte, error) { return tty.ReadSecret(ctx, user+"@"+host+"'s password") }
	}
	sshConnect := hosts.SSHConnector(c, base)
	return func(ctx context.Context, h config.Host) (remote.Transport, error) {
		t, err := sshConnect(ctx, h)
		if err != nil {
			return nil, err
		}
		return hosts.WithTrace(hosts.WithTimeout(t, f.commandTimeout), log.With(progress.HostKey, h.Name)), nil
	}, nil
}

// passphrasePrompt asks for a key's passphrase when stdin is a terminal.
func passphrasePrompt(ctx context.Context, tty *remote.Terminal) func(string) ([]byte, error) {
	if tty == nil {
		return nil
	}
	return func(keyPath string) ([]byte, error) { return tty.ReadSecret(ctx, "Passphrase for "+keyPath) }
}

type planFlags struct {
	output string
}

func (p *planFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&p.output, "output", "o", "text", "how to print the plan, or what a run did: text or json")
}

func (p *planFlags) check() error {
	if p.output != "text" && p.output != "json" {
		return &usageError{fmt.Errorf("invalid value %q for --output: use text or json", p.output)}
	}
	return nil
}

func (p *planFlags) print(streams Streams, pl *plan.Plan) error {
	if p.output == "json" {
		return plan.WriteJSON(streams.Out, pl)
	}
	plan.WriteText(streams.Out, pl)
	return nil
}

func newApplyCommand(streams Streams) *cobra.Command {
	f := &sshFlags{}
	pf := &planFlags{}
	var dryRun bool
	var healthTimeout, healthGate time.Duration
	var imagesDir string
	cmd := &cobra.Command{
		Use:   "apply -f cluster.yaml",
		Short: "Bring the hosts to the inventory over SSH, one safe stage at a time",
		Long: `apply reads every host (files, manifest, data directory, ports, clock, kubelet) and
asks etcd for its members and their health, then plans in stages and refuses, before
changing anything, what is unsafe: another CA on the hosts, a change that would cost
quorum, data of a member the cluster does not know. A new cluster is brought up on all
hosts at once; a running one is changed one member at a time, each waited for (its new
process, healthy, caught up) before the next, the leader last. A host added to the
inventory joins as a learner and is promoted once caught up. The control-plane hosts
of spec.controlPlane.hosts (external topology) get the etcd CA, their own
apiserver-etcd-client and /etc/kubernetes/etcd-external.yaml, in a stage of their own
after the members', restarting nothing. Only the files whose
sha256 or mode differ are written, atomically, with a backup. An image a host lacks
(etcd's, the Pod sandbox's) is imported from the archives of --images DIR (or
spec.images.dir) before anything starts there. Re-running with nothing changed writes
nothing and restarts nothing.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return converge(cmd.Context(), streams, f, pf, pipeline.ConvergeOptions{DryRun: dryRun, ExecOptions: pipeline.ExecOptions{HealthTimeout: healthTimeout, HealthGate: healthGate}}, certs.Options{}, imagesDir)
		},
	}
	f.bind(cmd)
	f.bindKeepBackups(cmd)
	pf.bind(cmd)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "read the hosts and etcd and print the plan's stages, changing nothing anywhere")
	cmd.Flags().DurationVar(&healthTimeout, "health-timeout", 5*time.Minute, "how long to wait for a member or the cluster to be healthy")
	bindHealthGate(cmd, &healthGate)
	bindImages(cmd, &imagesDir)
	return cmd
}

// converge reads the hosts and etcd, plans, and runs the plan unless it is a
// dry run: apply, and certs renew.
func converge(ctx context.Context, streams Streams, f *sshFlags, pf *planFlags, o pipeline.ConvergeOptions, certOpts certs.Options, imagesDir string) error {
	if err := pf.check(); err != nil {
		return err
	}
	if err := checkHealthGate(o.HealthGate); err != nil {
		return err
	}
	s, err := f.open(ctx, streams, progress.NewLog(streams.progress()), openOptions{Options: pipeline.Options{LockPKI: !o.DryRun, Certs: certOpts, ControlPlane: true}, withImages: true, images: imagesDir})
	if err != nil {
		return err
	}
	defer s.Close()
	if o.DryRun {
		out, err := pipeline.Converge(ctx, s, o, pipeline.Hooks{})
		if out != nil && out.Plan != nil {
			printCertEvents(streams, s.Events, true)
			if perr := pf.print(streams, out.Plan); perr != nil {
				return perr
			}
		}
		return err
	}
	if f.keepBackups < 0 {
		return &usageError{fmt.Errorf("invalid value %d for --keep-backups: use 0 (keep all) or more", f.keepBackups)}
	}
	o.KeepBackups = f.keepBackups
	sum := newSummary(streams, pf.output)
	out, err := pipeline.Converge(ctx, s, o, pipeline.Hooks{
		Confirm: func(p *plan.Plan) error { sum.warn(p.Warnings); return nil },
		Saved:   func(events []certs.Event) { printCertEvents(streams, events, false) },
	})
	if out == nil || out.Plan == nil || (err != nil && out.Result == nil && out.Members == nil) {
		return err
	}
	if out.Result == nil {
		sum.warn(out.Plan.Warnings)
		healthy, total := execute.Summary(out.Members)
		sum.members(out.Members)
		sum.printf("nothing to do: every host is as planned (nothing written, nothing restarted)")
		sum.printf("cluster: %d/%d members healthy", healthy, total)
		return sum.done(err)
	}
	sum.add(out.Result)
	if out.Members != nil {
		healthy, total := execute.Summary(out.Members)
		sum.members(out.Members)
		sum.printf("cluster: %d/%d members healthy", healthy, total)
	}
	return sum.done(err)
}

func newDiffCommand(streams Streams) *cobra.Command {
	f := &sshFlags{}
	pf := &planFlags{}
	var imagesDir string
	cmd := &cobra.Command{
		Use:   "diff -f cluster.yaml",
		Short: "Show the stages apply would run: per host what would change (path, mode, sha256; certificates' subject, SANs, expiry)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := pf.check(); err != nil {
				return err
			}
			s, err := f.open(cmd.Context(), streams, progress.NewLog(streams.progress()), openOptions{Options: pipeline.Options{ControlPlane: true}, withImages: true, images: imagesDir})
			if err != nil {
				return err
			}
			defer s.Close()
			out, err := pipeline.Converge(cmd.Context(), s, pipeline.ConvergeOptions{DryRun: true}, pipeline.Hooks{})
			if out != nil && out.Plan != nil {
				printCertEvents(streams, s.Events, true)
				if perr := pf.print(streams, out.Plan); perr != nil {
					return perr
				}
			}
			return err
		},
	}
	f.bind(cmd)
	pf.bind(cmd)
	bindImages(cmd, &imagesDir)
	return cmd
}

func newStatusCommand(streams Streams) *cobra.Command {
	f := &sshFlags{}
	var output string
	cmd := &cobra.Command{
		Use:   "status -f cluster.yaml [-o table|json]",
		Short: "Show every member and every inventory host: membership, leader, version, DB size, raft term and index, health, certificate expiry",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return &usageError{fmt.Errorf("invalid value %q for --output: use table or json", output)}
			}
			// The table is the output: progress only with --verbose.
			s, err := f.open(cmd.Context(), streams, progress.NewLog(progress.Quiet(streams.progress())), openOptions{Options: pipeline.Options{AnyHost: true, ControlPlane: true}})
			if err != nil {
				return err
			}
			defer s.Close()
			facts, err := s.Gather(cmd.Context(), false)
			if err != nil {
				return err
			}
			if s.PKI.CACreated {
				s.Log.Logger().Warn(fmt.Sprintf("%s has no etcd CA: etcd cannot be asked; only the hosts are shown", s.PKI.Dir))
			}
			r := status.Status(s.Cluster, facts, s.Unreachable, time.Now())
			r.WithReadyz(s.APIServersReady(cmd.Context(), facts))
			if output == "json" {
				return status.WriteStatusJSON(streams.Out, r)
			}
			return status.WriteStatusTable(streams.Out, r)
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}
