package app

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/etcdadm-io/etcdadm/pkg/apply"
	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
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
	askPassword       bool
}

func (f *sshFlags) bind(cmd *cobra.Command) {
	f.inventoryFlags.bind(cmd)
	cmd.Flags().BoolVar(&f.acceptNewHostKeys, "accept-new-host-keys", false, "trust and record the key of a host known_hosts does not know yet (a changed key is always refused)")
	cmd.Flags().StringVar(&f.sshConfig, "ssh-config", "", `ssh client configuration to honour (default ~/.ssh/config; "none" for none)`)
	cmd.Flags().IntVar(&f.concurrency, "concurrency", 10, "how many hosts to work on at once")
	cmd.Flags().DurationVar(&f.connectTimeout, "connect-timeout", 15*time.Second, "SSH connection timeout per attempt")
	cmd.Flags().DurationVar(&f.commandTimeout, "command-timeout", 2*time.Minute, "timeout of each command and file operation on a host")
	cmd.Flags().BoolVar(&f.askPassword, "ask-password", false, "allow SSH password authentication, asking on the terminal (keys and ssh-agent are tried first)")
}

// session is what the commands that reach the hosts share.
type session struct {
	cluster *config.Cluster
	pki     *certs.PKI
	plan    *plan.Plan
	hosts   *apply.Hosts
}

// open loads the inventory, makes sure of the PKI, computes the plan and
// connects to every host; the caller closes the hosts.
func (f *sshFlags) open(ctx context.Context, streams Streams, log *apply.Log) (*session, error) {
	if f.concurrency < 1 {
		return nil, &usageError{fmt.Errorf("invalid value %d for --concurrency: use 1 or more", f.concurrency)}
	}
	c, err := f.load(streams)
	if err != nil {
		return nil, err
	}
	p, pki, events, err := plan.Compute(c, plan.Options{})
	if err != nil {
		return nil, err
	}
	printCertEvents(streams, events)
	base := remote.Config{
		AcceptNewHostKeys: f.acceptNewHostKeys,
		SSHConfigFile:     f.sshConfig,
		ConnectTimeout:    f.connectTimeout,
		PassphraseEnv:     PassphraseEnv,
		PassphrasePrompt:  passphrasePrompt(streams),
		KeyCache:          &remote.KeyCache{},
	}
	if f.askPassword {
		prompt := terminalPrompt(streams)
		if prompt == nil {
			return nil, &usageError{fmt.Errorf("--ask-password needs a terminal on standard input")}
		}
		base.AllowPassword = true
		base.Password = func(host, user string) ([]byte, error) { return prompt(user + "@" + host + "'s password") }
	}
	sshConnect := apply.SSHConnector(c, base)
	connect := func(ctx context.Context, h config.Host) (remote.Transport, error) {
		t, err := sshConnect(ctx, h)
		if err != nil {
			return nil, err
		}
		return apply.WithTimeout(t, f.commandTimeout), nil
	}
	hs, err := apply.Connect(ctx, c.Spec.Hosts, connect, f.concurrency, log)
	if err != nil {
		return nil, err
	}
	return &session{cluster: c, pki: pki, plan: p, hosts: hs}, nil
}

// passphrasePrompt asks for a key's passphrase when stdin is a terminal.
func passphrasePrompt(streams Streams) func(string) ([]byte, error) {
	prompt := terminalPrompt(streams)
	if prompt == nil {
		return nil
	}
	return func(keyPath string) ([]byte, error) { return prompt("Passphrase for " + keyPath) }
}

// terminalPrompt asks a question without echo when stdin is a terminal.
func terminalPrompt(streams Streams) func(string) ([]byte, error) {
	in, ok := streams.In.(*os.File)
	if !ok || !term.IsTerminal(int(in.Fd())) {
		return nil
	}
	return func(question string) ([]byte, error) {
		fmt.Fprintf(streams.ErrOut, "%s: ", question)
		defer fmt.Fprintln(streams.ErrOut)
		return term.ReadPassword(int(in.Fd()))
	}
}

func newApplyCommand(streams Streams) *cobra.Command {
	f := &sshFlags{}
	var dryRun bool
	var healthTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "apply -f cluster.yaml",
		Short: "Bring the hosts to the plan over SSH and wait until every member is healthy",
		Long: `apply connects to every host, checks them all before changing anything (root,
kubelet, ports 2379-2381, data directory, clock), pushes only the files whose sha256 or
mode differ (atomically, backing up what it replaces), reloads and restarts the kubelet
only when its files changed, writes the static Pod last, and waits until every member
answers over mTLS. Re-running with nothing changed writes nothing and restarts nothing.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := apply.NewLog(streams.ErrOut)
			s, err := f.open(cmd.Context(), streams, log)
			if err != nil {
				return err
			}
			defer s.hosts.Close()
			res, err := apply.Run(cmd.Context(), s.cluster, s.plan, s.hosts, s.pki, apply.Options{
				Concurrency: f.concurrency, DryRun: dryRun, HealthTimeout: healthTimeout, Log: log,
			})
			if res != nil {
				writeApplySummary(streams, res, dryRun)
			}
			return err
		},
	}
	f.bind(cmd)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "check the hosts and show what would change, changing nothing")
	cmd.Flags().DurationVar(&healthTimeout, "health-timeout", 5*time.Minute, "how long to wait for the members to be healthy")
	return cmd
}

func writeApplySummary(streams Streams, res *apply.Result, dryRun bool) {
	if dryRun {
		apply.WriteDiff(streams.Out, res.Diffs)
		return
	}
	if !res.Changed() {
		fmt.Fprintln(streams.Out, "nothing to do: every host is up to date (nothing written, nothing restarted)")
	}
	for _, h := range res.Hosts {
		if len(h.Written) == 0 {
			continue
		}
		restart := ""
		if h.RestartedKubelet {
			restart = ", kubelet restarted"
		}
		fmt.Fprintf(streams.Out, "%s: %d file(s) written%s\n", h.Host, len(h.Written), restart)
	}
	healthy := 0
	for _, m := range res.Members {
		if m.Healthy {
			healthy++
		}
	}
	if len(res.Members) > 0 {
		fmt.Fprintf(streams.Out, "cluster: %d/%d members healthy\n", healthy, len(res.Members))
	}
}

func newDiffCommand(streams Streams) *cobra.Command {
	f := &sshFlags{}
	cmd := &cobra.Command{
		Use:   "diff -f cluster.yaml",
		Short: "Show, per host, what apply would change (path, mode, sha256; certificates' subject, SANs, expiry)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := f.open(cmd.Context(), streams, apply.NewLog(streams.ErrOut))
			if err != nil {
				return err
			}
			defer s.hosts.Close()
			diffs, err := apply.Diff(cmd.Context(), s.plan, s.hosts, f.concurrency)
			if err != nil {
				return err
			}
			apply.WriteDiff(streams.Out, diffs)
			return nil
		},
	}
	f.bind(cmd)
	return cmd
}

func newStatusCommand(streams Streams) *cobra.Command {
	f := &sshFlags{}
	var output string
	cmd := &cobra.Command{
		Use:   "status -f cluster.yaml [-o table|json]",
		Short: "Show every member: ID, leader, learner, version, DB size, raft term and index, health, certificate expiry",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return &usageError{fmt.Errorf("invalid value %q for --output: use table or json", output)}
			}
			s, err := f.open(cmd.Context(), streams, apply.NewLog(nil))
			if err != nil {
				return err
			}
			defer s.hosts.Close()
			reports, err := apply.Status(cmd.Context(), s.cluster, s.hosts, s.pki, time.Now())
			if err != nil {
				return err
			}
			if output == "json" {
				return apply.WriteStatusJSON(streams.Out, reports)
			}
			return apply.WriteStatusTable(streams.Out, reports)
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}
