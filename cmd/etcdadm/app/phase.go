package app

import (
	"github.com/spf13/cobra"

	"github.com/etcdadm-io/etcdadm/pkg/plan"
)

func newPhaseCommand(streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "phase",
		Short: "Run one part of the work on its own, kubeadm style",
	}
	for _, p := range []struct {
		part  plan.Part
		short string
	}{
		{plan.PartCerts, "Write each host's etcd certificates and keys (the CA key only for stacked members)"},
		{plan.PartKubeadmConfig, "Write each host's kubeadmcfg.yaml"},
		{plan.PartKubelet, "Write each external host's kubelet configuration and systemd drop-in"},
		{plan.PartManifests, "Write each host's etcd static Pod manifest"},
	} {
		f := &renderFlags{}
		part := p.part
		sub := &cobra.Command{
			Use:   string(part) + " -f cluster.yaml -o DIR",
			Short: p.short,
			Long:  p.short + ", under DIR/<host>/ at their paths on the host, as render does for all parts.",
			Args:  noArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return runRender(streams, f, []plan.Part{part})
			},
		}
		f.bind(sub)
		sub.Flags().StringVarP(&f.out, "output-dir", "o", "", "the directory to write the bundles to (required)")
		cmd.AddCommand(sub)
	}
	return cmd
}
