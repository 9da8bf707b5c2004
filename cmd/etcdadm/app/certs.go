package app

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/gather"
	"github.com/etcdadm-io/etcdadm/pkg/pipeline"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
	"github.com/etcdadm-io/etcdadm/pkg/status"
)

func newCertsCommand(streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Make and inspect the etcd PKI on this machine",
	}
	cmd.AddCommand(newCertsGenerateCommand(streams), newCertsCheckExpirationCommand(streams), newCertsRenewCommand(streams), newCertsRotateCACommand(streams))
	return cmd
}

func newCertsGenerateCommand(streams Streams) *cobra.Command {
	f := &inventoryFlags{}
	cmd := &cobra.Command{
		Use:   "generate -f cluster.yaml",
		Short: "Create the etcd CA and every member's certificates in spec.pki.dir",
		Long: `generate creates the etcd CA (or uses the one in spec.pki.dir) and, for every host,
the etcd server, peer and healthcheck-client certificates and the apiserver-etcd-client
certificate, and for every control-plane host (spec.controlPlane.hosts) its own
apiserver-etcd-client certificate, exactly as kubeadm makes them. Existing certificates are kept while they
are signed by the CA, cover the wanted SANs and are not near expiry.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.load(streams)
			if err != nil {
				return err
			}
			release, err := certs.Lock(c.PKIDir())
			if err != nil {
				return err
			}
			defer release()
			if err := certs.CheckKeyModes(c.PKIDir(), true, streams.ErrOut); err != nil {
				return err
			}
			_, events, err := certs.Ensure(c, certs.Options{})
			if err != nil {
				return err
			}
			for _, e := range events {
				who := e.Host
				if who == "" {
					who = "-"
				}
				reason := ""
				if e.Reason != "" {
					reason = " (" + e.Reason + ")"
				}
				fmt.Fprintf(streams.Out, "%s\t%s\t%s%s\t%s\n", who, e.Name, e.Action, reason, e.Path)
			}
			return nil
		},
	}
	f.bind(cmd)
	return cmd
}

func newCertsCheckExpirationCommand(streams Streams) *cobra.Command {
	f := &sshFlags{}
	var output string
	var remote bool
	var warnWithin time.Duration
	cmd := &cobra.Command{
		Use:   "check-expiration -f cluster.yaml [--remote] [--warn-within DURATION] [-o table|json]",
		Short: "Show when every certificate expires: in spec.pki.dir and, with --remote, on every host",
		Long: `check-expiration lists every certificate of the local PKI (host "" in JSON) and, with
--remote, every certificate on every host: its path, subject, issuer, SANs, expiry and
time left, and whether the host's copy differs from the local one. It writes nothing.
With --warn-within, it exits 1 when a certificate expires within that time (for cron
and monitoring).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return &usageError{fmt.Errorf("invalid value %q for --output: use table or json", output)}
			}
			if warnWithin < 0 {
				return &usageError{fmt.Errorf("invalid value %s for --warn-within: use a positive duration such as 720h", warnWithin)}
			}
			now := time.Now()
			c, err := f.load(streams)
			if err != nil {
				return err
			}
			if !remote { // with --remote, the session checks them
				if err := certs.CheckKeyModes(c.PKIDir(), false, streams.ErrOut); err != nil {
					return err
				}
			}
			rows := certs.CheckExpiration(c, now)
			var unreachable []string
			if remote {
				// The table is the output: progress only with --verbose.
				s, err := f.open(cmd.Context(), streams, progress.NewLog(progress.Quiet(streams.progress())), openOptions{Options: pipeline.Options{AnyHost: true, ControlPlane: true}})
				if err != nil {
					return err
				}
				defer s.Close()
				facts, err := gather.Gather(cmd.Context(), s.Cluster, s.Runtime, s.Hosts, nil, gather.Options{Concurrency: f.concurrency})
				if err != nil {
					return err
				}
				for _, h := range c.AllHosts() {
					if err := s.Unreachable[h.Name]; err != nil {
						unreachable = append(unreachable, fmt.Sprintf("%s: %v", h.Name, err))
						continue
					}
					rows = append(rows, status.HostCertificates(c, h.Name, facts.Hosts[h.Name], now)...)
				}
			}
			if output == "json" {
				err = certs.WriteExpirationJSON(streams.Out, rows)
			} else {
				err = certs.WriteExpirationTable(streams.Out, rows)
			}
			if err != nil {
				return err
			}
			var problems []string
			if warnWithin > 0 {
				for _, r := range rows {
					if r.ExpiresWithin(now, warnWithin) {
						where := r.Path
						if r.Host != "" {
							where = r.Host + ":" + r.Path
						}
						problems = append(problems, fmt.Sprintf("%s expires %s (%s)", where, r.NotAfter.Format(time.RFC3339), r.Residual))
					}
				}
			}
			if len(unreachable) > 0 {
				problems = append(problems, "could not read "+strings.Join(unreachable, "; "))
			}
			if len(problems) > 0 {
				return fmt.Errorf("%d certificate problem(s):\n  - %s", len(problems), strings.Join(problems, "\n  - "))
			}
			return nil
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().BoolVar(&remote, "remote", false, "also read the certificates on every host, over SSH")
	cmd.Flags().DurationVar(&warnWithin, "warn-within", 0, "exit 1 when a certificate expires within this time, e.g. 720h")
	return cmd
}

func newCertsRenewCommand(streams Streams) *cobra.Command {
	f := &sshFlags{}
	pf := &planFlags{}
	var hosts []string
	var dryRun bool
	var healthTimeout, healthGate time.Duration
	cmd := &cobra.Command{
		Use:   "renew -f cluster.yaml [--hosts a,b] [NAME...]",
		Short: "Renew the member certificates on a running cluster, one member at a time",
		Long: `renew makes new keys and certificates, from the etcd CA in spec.pki.dir, for every leaf
(etcd-server, etcd-peer, etcd-healthcheck-client, apiserver-etcd-client) or only the
named ones, on every host or only --hosts, with the subjects, SANs and validity the
inventory gives. The CA is not changed. The hosts are then changed one member at a time,
leader last: the files are written, and when the server or peer certificate changed the
member restarts (its peer streams keep the old certificate until it does), and the next
host waits until it is healthy and caught up. A change that would cost quorum is
refused. When the members' certificates have expired and they cannot reach each other,
there is no quorum to protect: every member gets its new certificates and restarts at
once.

The control-plane hosts of spec.controlPlane.hosts get their apiserver-etcd-client
renewed too, with no restart: a kube-apiserver reads its client certificate on every new
connection, but --etcd-cafile only when it starts.`,
		RunE: func(cmd *cobra.Command, names []string) error {
			for _, n := range names {
				if _, ok := certs.SpecByName(n); !ok && n != "all" {
					return &usageError{fmt.Errorf("unknown certificate %q: use %s or all", n, strings.Join(leafNames(), ", "))}
				}
			}
			if len(names) == 0 {
				names = []string{"all"}
			}
			c, err := f.load(streams)
			if err != nil {
				return err
			}
			for _, h := range hosts {
				if !slices.Contains(c.AllHostNames(), h) {
					return &usageError{fmt.Errorf("invalid value %q for --hosts: not a host of the inventory (%s)", h, strings.Join(c.AllHostNames(), ", "))}
				}
			}
			return converge(cmd.Context(), streams, f, pf, pipeline.ConvergeOptions{
				DryRun: dryRun, ExecOptions: pipeline.ExecOptions{HealthTimeout: healthTimeout, HealthGate: healthGate},
				Check: pipeline.OnlyCertificates,
			}, certs.Options{Renew: names, Hosts: hosts}, "")
		},
	}
	f.bind(cmd)
	f.bindKeepBackups(cmd)
	pf.bind(cmd)
	cmd.Flags().StringSliceVar(&hosts, "hosts", nil, "renew only these hosts' certificates, etcd or control-plane hosts (default every host)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the stages, changing nothing anywhere")
	cmd.Flags().DurationVar(&healthTimeout, "health-timeout", 5*time.Minute, "how long to wait for a member or the cluster to be healthy")
	bindHealthGate(cmd, &healthGate)
	return cmd
}

func leafNames() []string {
	var out []string
	for _, s := range certs.LeafSpecs() {
		out = append(out, s.Name)
	}
	return out
}
