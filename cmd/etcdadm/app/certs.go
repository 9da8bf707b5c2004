package app

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
)

func newCertsCommand(streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Make and inspect the etcd PKI on this machine",
	}
	cmd.AddCommand(newCertsGenerateCommand(streams), newCertsCheckExpirationCommand(streams))
	return cmd
}

func newCertsGenerateCommand(streams Streams) *cobra.Command {
	f := &inventoryFlags{}
	cmd := &cobra.Command{
		Use:   "generate -f cluster.yaml",
		Short: "Create the etcd CA and every member's certificates in spec.pki.dir",
		Long: `generate creates the etcd CA (or uses the one in spec.pki.dir) and, for every host,
the etcd server, peer and healthcheck-client certificates and the apiserver-etcd-client
certificate, exactly as kubeadm makes them. Existing certificates are kept while they
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
	f := &inventoryFlags{}
	var output string
	cmd := &cobra.Command{
		Use:   "check-expiration -f cluster.yaml [-o table|json]",
		Short: "Show when every certificate in spec.pki.dir expires",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return &usageError{fmt.Errorf("invalid value %q for --output: use table or json", output)}
			}
			c, err := f.load(streams)
			if err != nil {
				return err
			}
			rows := certs.CheckExpiration(c, time.Now())
			if output == "json" {
				return certs.WriteExpirationJSON(streams.Out, rows)
			}
			return certs.WriteExpirationTable(streams.Out, rows)
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}
