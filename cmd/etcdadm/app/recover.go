package app

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/etcdadm-io/etcdadm/pkg/pipeline"
)

func newRecoverCommand(streams Streams) *cobra.Command {
	f := &changeFlags{}
	var from string
	cmd := &cobra.Command{
		Use:   "recover -f cluster.yaml [--from NAME]",
		Short: "Bring back a cluster that lost quorum for good, from one member's data",
		Long: `recover is for a cluster that lost quorum for good: too many members are gone to ever
elect a leader again. It keeps one member's data: NAME's with --from, or by default that of
the member that answers with the highest raft index (the others' indexes are printed:
what a member had beyond the kept data is lost). It is refused while the cluster has
quorum, and when no member runs and no --from names one.

Every member stops (its manifest or environment file kept under /var/lib/etcdadm/backup);
the kept data starts alone with --force-new-cluster, which removes every other member
from it, keeping its member ID and every key; it restarts without the flag; then every
other host of the inventory that can be reached joins again, one at a time, as a learner
promoted once caught up, its old data moved under /var/lib/etcdadm/backup. A host that
cannot be reached is left out: once it is back, 'etcdadm apply' adds it. A run cut short
goes on when run again.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runChange(cmd.Context(), streams, f, "recover", func(ctx context.Context, s *pipeline.Session, o pipeline.ConvergeOptions, h pipeline.Hooks) (*pipeline.Outcome, error) {
				return pipeline.Recover(ctx, s, from, o, h)
			}, printMembers(cmd.Context(), f))
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVar(&from, "from", "", "the host whose data to keep (default: the running member with the highest raft index)")
	return cmd
}
