package app

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/etcdadm-io/etcdadm/pkg/pipeline"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
)

func newAdoptCommand(streams Streams) *cobra.Command {
	f := &sshFlags{}
	var yes, dryRun bool
	var output string
	cmd := &cobra.Command{
		Use:   "adopt -f cluster.yaml [--yes] [-o yaml]",
		Short: "Take over a running etcd cluster etcdadm did not build: its PKI into spec.pki.dir, unchanged",
		Long: `adopt reads every inventory host over SSH (the etcd CA and its key, every member's
server, peer, healthcheck-client and apiserver-etcd-client certificates, etcd's static Pod
or systemd environment, the kubelet's drop-ins) and asks etcd for its members. It refuses,
writing nothing, hosts that disagree on the CA, a host that is not a member, a member not
in the inventory, a certificate the CA did not issue, and a member whose etcd.yaml no
inventory could write byte for byte. Otherwise it writes the CA, its key and the hosts'
own certificates into spec.pki.dir, as 'certs generate' lays them out: nothing is reissued.
It never writes to a host.

Every difference between what runs and what the given inventory would write goes to
standard error as a unified diff. With -o yaml, the inventory of what runs goes to
standard output: apply it and nothing restarts.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "yaml" {
				return &usageError{fmt.Errorf("invalid value %q for --output: use yaml", output)}
			}
			if !yes && !dryRun && !isTerminal(streams) {
				return fmt.Errorf("refusing to adopt without confirmation: run it on a terminal, or pass --yes (--dry-run writes nothing)")
			}
			return runAdopt(cmd.Context(), streams, f, yes, dryRun, output)
		},
	}
	f.bind(cmd)
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation (for scripts)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "read and compare only: write nothing, not even spec.pki.dir")
	cmd.Flags().StringVarP(&output, "output", "o", "", "yaml: print the inventory of what runs on standard output")
	return cmd
}

func runAdopt(ctx context.Context, streams Streams, f *sshFlags, yes, dryRun bool, output string) error {
	if f.concurrency < 1 {
		return &usageError{fmt.Errorf("invalid value %d for --concurrency: use 1 or more", f.concurrency)}
	}
	c, err := f.load(streams)
	if err != nil {
		return err
	}
	log := progress.NewLog(streams.progress())
	connect, err := f.connector(ctx, c, streams, log.Logger())
	if err != nil {
		return err
	}
	a, err := pipeline.Adopt(ctx, c, pipeline.AdoptOptions{
		Options: pipeline.Options{Connect: connect, Concurrency: f.concurrency, EtcdTimeout: f.etcdTimeout, Log: log},
		DryRun:  dryRun,
		Confirm: func(a *pipeline.Adoption) error {
			report(streams, a)
			if yes {
				return nil
			}
			ok, err := confirm(ctx, streams, fmt.Sprintf("write the PKI of cluster %s's hosts into %s?", c.Metadata.Name, c.PKIDir()))
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("adopt: not confirmed, nothing written")
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	if dryRun {
		report(streams, a)
	}
	if a.Saved {
		streams.progress().Info(fmt.Sprintf("the hosts' CA, its key and %d members' certificates are in %s; nothing was reissued and no host was written to", len(a.Leaves), c.PKIDir()))
	}
	if output == "yaml" {
		_, err := streams.Out.Write(a.YAML)
		return err
	}
	return nil
}

// report says what was read: the layout, the members, the notes and the
// differences, on standard error.
func report(streams Streams, a *pipeline.Adoption) {
	log := streams.progress()
	log.Info(fmt.Sprintf("layout: %s; members: %s", a.Layout, describeMembers(a.Members)))
	for _, n := range a.Notes {
		log.Warn(n)
	}
	if a.Differences == "" {
		log.Info("the inventory writes what runs: no difference")
		return
	}
	log.Info("what runs (-) and what the inventory would write (+):")
	fmt.Fprint(streams.ErrOut, a.Differences)
}
