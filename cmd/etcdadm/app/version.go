package app

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/etcdadm-io/etcdadm/pkg/config"
)

func newVersionCommand(streams Streams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print etcdadm's version and the Kubernetes versions it deploys etcd for",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := "(devel)"
			if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
				v = info.Main.Version
			}
			fmt.Fprintf(streams.Out, "etcdadm %s (kubeadm parity: v1.37.2; kubernetesVersion v1.37.x, v1.36.x; default %s)\n", v, config.DefaultKubernetesVersion)
			return nil
		},
	}
}
