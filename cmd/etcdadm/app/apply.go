package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/execute"
	"github.com/etcdadm-io/etcdadm/pkg/gather"
	"github.com/etcdadm-io/etcdadm/pkg/hosts"
	"github.com/etcdadm-io/etcdadm/pkg/images"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/pipeline"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
	"github.com/etcdadm-io/etcdadm/pkg/runtime"
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

// session is what the commands that reach the hosts share.
type session struct {
	cluster *config.Cluster
	// rt runs the members: chosen once, from the inventory.
	rt     runtime.Runtime
	pki    *certs.PKI
	events []certs.Event
	hosts  *hosts.Hosts
	// unreachable holds the hosts that could not be reached, when allowed.
	unreachable map[string]error
	etcd        *etcdclient.Client
	log         *progress.Log
	// images are the image archives to import from; nil for none.
	images  *images.Set
	release []func()
}

func (s *session) close() {
	if s.etcd != nil {
		s.etcd.Close()
	}
	if s.hosts != nil {
		s.hosts.Close()
	}
	for i := len(s.release) - 1; i >= 0; i-- {
		s.release[i]()
	}
}

type openOptions struct {
	// lockPKI takes the local PKI directory for a run that writes.
	lockPKI bool
	// certs say which certificates to reissue whatever their state.
	certs certs.Options
	// rotation is set for the command that runs a CA rotation: the others
	// are refused while one is in progress.
	rotation bool
	// anyHost goes on without the hosts that cannot be reached.
	anyHost bool
	// withImages reads the image archives of --images (images) or
	// spec.images.dir before any host is reached, refusing a bad one.
	withImages bool
	images     string
	// controlPlane connects to the control-plane hosts too: for the
	// commands that plan, renew or read their files.
	controlPlane bool
}

// open loads the inventory, works out the PKI in memory (nothing is saved),
// connects to the hosts and prepares an etcd client; the caller closes the
// session.
func (f *sshFlags) open(ctx context.Context, streams Streams, log *progress.Log, o openOptions) (*session, error) {
	if f.concurrency < 1 {
		return nil, &usageError{fmt.Errorf("invalid value %d for --concurrency: use 1 or more", f.concurrency)}
	}
	c, err := f.load(streams)
	if err != nil {
		return nil, err
	}
	var archives *images.Set
	if o.withImages {
		if archives, err = imageArchives(c, o.images, streams.progress()); err != nil {
			return nil, err
		}
	}
	if certs.RotationInProgress(c) && !o.rotation {
		return nil, fmt.Errorf("a CA rotation is in progress (%s exists in %s): finish it with 'etcdadm certs rotate-ca', or go back with 'etcdadm certs rotate-ca --abort'", certs.NewCABaseName+".crt", c.PKIDir())
	}
	s := &session{cluster: c, rt: pipeline.RuntimeFor(c), log: log, images: archives}
	if o.lockPKI {
		release, err := certs.Lock(c.PKIDir())
		if err != nil {
			return nil, err
		}
		s.release = append(s.release, release)
	}
	// A run that writes makes loose private keys private; the others only warn.
	if err := certs.CheckKeyModes(c.PKIDir(), o.lockPKI, streams.ErrOut); err != nil {
		s.close()
		return nil, err
	}
	if s.pki, s.events, err = certs.Compute(c, o.certs); err != nil {
		s.close()
		return nil, err
	}
	connect, err := f.connector(ctx, c, streams, log.Logger())
	if err != nil {
		s.close()
		return nil, err
	}
	targets := c.Spec.Hosts
	if o.controlPlane {
		targets = c.AllHosts()
	}
	if o.anyHost {
		s.hosts, s.unreachable = hosts.ConnectAny(ctx, targets, connect, f.concurrency, log)
	} else if s.hosts, err = hosts.Connect(ctx, targets, connect, f.concurrency, log); err != nil {
		s.close()
		return nil, err
	}
	if !s.pki.CACreated {
		if s.etcd, err = etcdclient.FromPKI(s.pki, c.Spec.Hosts[0].Name, hosts.TunnelDialer(s.hosts)); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

// gather reads the facts of the hosts and of etcd; with lock, every host is
// locked for this run until the session closes.
func (s *session) gather(ctx context.Context, f *sshFlags, lock bool) (*gather.Facts, error) {
	facts, err := gather.Gather(ctx, s.cluster, s.rt, s.hosts, s.etcd, gather.Options{
		Concurrency: f.concurrency, Lock: lock, EtcdTimeout: f.etcdTimeout,
	})
	if err != nil {
		return nil, err
	}
	s.release = append(s.release, facts.Release)
	return facts, nil
}

// connector dials the hosts with the run's logger: each command and file
// operation is traced at debug level, for --verbose.
func (f *sshFlags) connector(ctx context.Context, c *config.Cluster, streams Streams, log *slog.Logger) (hosts.Connector, error) {
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
	var healthTimeout time.Duration
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
			return converge(cmd.Context(), streams, f, pf, convergeOptions{dryRun: dryRun, healthTimeout: healthTimeout, images: imagesDir})
		},
	}
	f.bind(cmd)
	f.bindKeepBackups(cmd)
	pf.bind(cmd)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "read the hosts and etcd and print the plan's stages, changing nothing anywhere")
	cmd.Flags().DurationVar(&healthTimeout, "health-timeout", 5*time.Minute, "how long to wait for a member or the cluster to be healthy")
	bindImages(cmd, &imagesDir)
	return cmd
}

type convergeOptions struct {
	dryRun        bool
	healthTimeout time.Duration
	certs         certs.Options
	// images is the directory of image archives (--images).
	images string
	// check refuses a plan the command does not want to run.
	check func(*plan.Plan) error
}

// converge reads the hosts and etcd, plans, and runs the plan unless it is a
// dry run: apply, and certs renew.
func converge(ctx context.Context, streams Streams, f *sshFlags, pf *planFlags, o convergeOptions) error {
	if err := pf.check(); err != nil {
		return err
	}
	s, err := f.open(ctx, streams, progress.NewLog(streams.progress()), openOptions{lockPKI: !o.dryRun, certs: o.certs, withImages: true, images: o.images, controlPlane: true})
	if err != nil {
		return err
	}
	defer s.close()
	facts, err := s.gather(ctx, f, !o.dryRun)
	if err != nil {
		return err
	}
	p, err := plan.Build(plan.Input{Cluster: s.cluster, Runtime: s.rt, PKI: s.pki, Hosts: facts.Hosts, Etcd: facts.Etcd, Images: s.images, Now: time.Now()})
	if err == nil && o.check != nil {
		err = o.check(p)
	}
	if o.dryRun && p != nil {
		printCertEvents(streams, s.events, true)
		if perr := pf.print(streams, p); perr != nil {
			return perr
		}
	}
	if err != nil || o.dryRun {
		return err
	}
	return runApply(ctx, streams, s, p, facts, o.healthTimeout, f, pf)
}

// runApply saves what the PKI lacks, runs the plan and reports.
func runApply(ctx context.Context, streams Streams, s *session, p *plan.Plan, facts *gather.Facts, healthTimeout time.Duration, f *sshFlags, pf *planFlags) error {
	sum := newSummary(streams, pf.output)
	sum.warn(p.Warnings)
	if s.pki.Unsaved() {
		if err := s.pki.Save(); err != nil {
			return err
		}
		printCertEvents(streams, s.events, false)
		if s.etcd == nil {
			var err error
			if s.etcd, err = etcdclient.FromPKI(s.pki, s.cluster.Spec.Hosts[0].Name, hosts.TunnelDialer(s.hosts)); err != nil {
				return err
			}
		}
	}
	if p.Empty() {
		// The facts were read a moment ago: they say how healthy it is.
		sts := status.Status(s.cluster, facts, nil, time.Now()).Statuses()
		healthy, total := execute.Summary(sts)
		sum.members(sts)
		sum.printf("nothing to do: every host is as planned (nothing written, nothing restarted)")
		sum.printf("cluster: %d/%d members healthy", healthy, total)
		if healthy < total {
			return sum.done(fmt.Errorf("members not healthy, and nothing in the inventory to change: %v", etcdclient.Unhealthy(sts)))
		}
		return sum.done(nil)
	}
	if f.keepBackups < 0 {
		return &usageError{fmt.Errorf("invalid value %d for --keep-backups: use 0 (keep all) or more", f.keepBackups)}
	}
	x := &execute.Executor{Cluster: s.cluster, Runtime: s.rt, Hosts: s.hosts, Etcd: s.etcd, Log: s.log, HealthTimeout: healthTimeout, Concurrency: f.concurrency, KeepBackups: f.keepBackups}
	res, err := x.Run(ctx, p)
	sum.add(res)
	if err != nil {
		return sum.done(err)
	}
	sts, err := s.etcd.WaitHealthy(ctx, ops.Endpoints(s.cluster), healthTimeout, nil)
	healthy, total := execute.Summary(sts)
	sum.members(sts)
	sum.printf("cluster: %d/%d members healthy", healthy, total)
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
			s, err := f.open(cmd.Context(), streams, progress.NewLog(streams.progress()), openOptions{withImages: true, images: imagesDir, controlPlane: true})
			if err != nil {
				return err
			}
			defer s.close()
			facts, err := s.gather(cmd.Context(), f, false)
			if err != nil {
				return err
			}
			p, err := plan.Build(plan.Input{Cluster: s.cluster, Runtime: s.rt, PKI: s.pki, Hosts: facts.Hosts, Etcd: facts.Etcd, Images: s.images, Now: time.Now()})
			if p != nil {
				printCertEvents(streams, s.events, true)
				if perr := pf.print(streams, p); perr != nil {
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
			s, err := f.open(cmd.Context(), streams, progress.NewLog(progress.Quiet(streams.progress())), openOptions{anyHost: true, controlPlane: true})
			if err != nil {
				return err
			}
			defer s.close()
			facts, err := s.gather(cmd.Context(), f, false)
			if err != nil {
				return err
			}
			if s.pki.CACreated {
				s.log.Logger().Warn(fmt.Sprintf("%s has no etcd CA: etcd cannot be asked; only the hosts are shown", s.pki.Dir))
			}
			r := status.Status(s.cluster, facts, s.unreachable, time.Now())
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
