package app

import (
	"github.com/spf13/cobra"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/pipeline"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
)

func newDefragCommand(streams Streams) *cobra.Command {
	f := &changeFlags{}
	o := plan.DefragOptions{}
	cmd := &cobra.Command{
		Use:   "defrag -f cluster.yaml [--compact=true] [--members a,b] [--yes] [--dry-run]",
		Short: "Compact the history, then defragment one member at a time, the leader last after handing its leadership over",
		Long: `defrag gives the space of deleted and overwritten keys back to the file system:
  1. the history is compacted up to the revision current when it runs (--compact=false
     skips it, e.g. when the kube-apiserver compacts on its own and no NOSPACE is raised);
  2. each follower is defragmented, one at a time, each waited for until healthy and
     caught up before the next;
  3. the leader hands its leadership to a follower defragmented already, then is
     defragmented in turn: a member applies nothing while its database is rewritten,
     and a leader that applies nothing holds every write of the cluster;
  4. NOSPACE, if raised, is disarmed once every member's database takes at most 90% of
     its quota.
Each member's database size is printed before and after. It is refused while a member
is not healthy or a CORRUPT alarm is raised. --members limits it to some members (the
order stays followers first). It shows the plan and asks (--yes for scripts).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkHealthGate(f.healthGate); err != nil {
				return err
			}
			return runChange(cmd.Context(), streams, f, "defragment the members", change(func(in plan.Input) (*plan.Plan, error) {
				return plan.Defrag(in, o)
			}), func(s *pipeline.Session, out *pipeline.Outcome, sum *summary) {
				after := s.Etcd.Status(cmd.Context(), ops.Endpoints(s.Cluster), f.etcdTimeout)
				sum.members(after)
				reportSizes(sum, s, out, after)
			})
		},
	}
	f.bind(cmd)
	cmd.Flags().BoolVar(&o.Compact, "compact", true, "compact the history up to the current revision first (a defragment gives back only what compaction freed)")
	bindHealthGate(cmd, &f.healthGate)
	cmd.Flags().StringSliceVar(&o.Members, "members", nil, "defragment only these members (inventory host names, comma-separated)")
	return cmd
}

// reportSizes prints each member's database size before the run and after.
func reportSizes(sum *summary, s *pipeline.Session, out *pipeline.Outcome, after []etcdclient.MemberStatus) {
	for _, st := range after {
		before := "-"
		if out.Facts != nil && out.Facts.Etcd != nil {
			if b, ok := out.Facts.Etcd.Status[st.MemberID]; ok && st.MemberID != 0 {
				before = ops.Bytes(b.DBSize)
			}
		}
		if !st.Answered() {
			sum.printf("%s: database %s before; no answer after: %s", st.Name, before, st.Error)
			continue
		}
		sum.printf("%s: database %s before, %s after (%s in use, quota %s)", st.Name, before, ops.Bytes(st.DBSize), ops.Bytes(st.DBSizeInUse), ops.Bytes(ops.Quota(s.Cluster, st)))
	}
}
