package app

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/pipeline"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
)

func newAlarmCommand(streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alarm",
		Short: "List the cluster's alarms (NOSPACE, CORRUPT), or disarm them",
	}
	cmd.AddCommand(newAlarmListCommand(streams), newAlarmDisarmCommand(streams))
	return cmd
}

// alarmRow is one alarm as `alarm list` prints it, with its member's
// database size and quota when it answered.
type alarmRow struct {
	Member   string `json:"member"`
	MemberID string `json:"memberID,omitempty"`
	Type     string `json:"type"`
	DBSize   int64  `json:"dbSize,omitempty"`
	Quota    int64  `json:"dbSizeQuota,omitempty"`
}

func newAlarmListCommand(streams Streams) *cobra.Command {
	f := &sshFlags{}
	var output string
	cmd := &cobra.Command{
		Use:   "list -f cluster.yaml [-o table|json]",
		Short: "List the active alarms, each with its member and that member's database size and quota",
		Long: `list asks etcd for its active alarms: NOSPACE (a member's database reached its quota:
the cluster takes no writes) and CORRUPT (a member's data differs from its peers': the
cluster takes no writes). Without quorum, etcd's alarm list cannot be read: the alarms
the members' statuses report are listed without their member. It writes nothing anywhere.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return &usageError{fmt.Errorf("invalid value %q for --output: use table or json", output)}
			}
			rows, err := listAlarms(cmd.Context(), streams, f)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(streams.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					Alarms []alarmRow `json:"alarms"`
				}{rows})
			}
			if len(rows) == 0 {
				fmt.Fprintln(streams.Out, "no alarm")
				return nil
			}
			tw := tabwriter.NewWriter(streams.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "MEMBER\tID\tALARM\tDB SIZE\tQUOTA")
			for _, r := range rows {
				size, quota := "-", "-"
				if r.DBSize > 0 {
					size, quota = ops.Bytes(r.DBSize), ops.Bytes(r.Quota)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", orDash(r.Member), orDash(r.MemberID), r.Type, size, quota)
			}
			return tw.Flush()
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

// listAlarms reads the hosts and etcd, locking nothing, and returns the
// alarms.
func listAlarms(ctx context.Context, streams Streams, f *sshFlags) ([]alarmRow, error) {
	s, err := f.open(ctx, streams, progress.NewLog(progress.Quiet(streams.progress())), openOptions{Options: pipeline.Options{AnyHost: true}})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if err := s.NeedEtcd("etcdadm cannot authenticate to the cluster"); err != nil {
		return nil, err
	}
	facts, err := s.Gather(ctx, false)
	if err != nil {
		return nil, err
	}
	rows := []alarmRow{}
	for _, a := range facts.Etcd.Alarms {
		r := alarmRow{Member: a.Member, Type: a.Type}
		if a.MemberID != 0 {
			r.MemberID = etcdclient.FormatID(a.MemberID)
			if st, ok := facts.Etcd.Status[a.MemberID]; ok {
				r.DBSize, r.Quota = st.DBSize, ops.Quota(s.Cluster, st)
			}
		}
		rows = append(rows, r)
	}
	return rows, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newAlarmDisarmCommand(streams Streams) *cobra.Command {
	f := &changeFlags{}
	cmd := &cobra.Command{
		Use:   "disarm -f cluster.yaml [--yes] [--dry-run]",
		Short: "Disarm the active alarms: NOSPACE once every database is under its quota again",
		Long: `disarm disarms each active alarm, one operation per alarm, after showing them and asking
(--yes for scripts). A NOSPACE alarm is disarmed only once every member's database takes
at most 90% of its quota: disarmed earlier, the next writes would raise it again. Until
then it is refused, nothing changed, naming each member over and by how much: run
'etcdadm defrag' (which compacts, gives the free space back and disarms NOSPACE), or raise
quota-backend-bytes in spec.etcd.extraArgs and run 'etcdadm apply'. A CORRUPT alarm is
disarmed only once the member it names is no longer a member of the cluster.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			return runChange(ctx, streams, f, "disarm the alarms", change(plan.Disarm), func(s *pipeline.Session, _ *pipeline.Outcome, sum *summary) {
				alarms, err := s.Etcd.AlarmList(ctx, ops.ClientURLs(s.Cluster), f.etcdTimeout)
				switch {
				case err != nil:
					sum.printf("alarms: %v", err)
				case len(alarms) == 0:
					sum.printf("alarms: none; the cluster takes writes again")
				default:
					for _, a := range alarms {
						sum.printf("alarm still raised: %s of %s", a.Type, a.Member)
					}
				}
			})
		},
	}
	f.bind(cmd)
	return cmd
}
