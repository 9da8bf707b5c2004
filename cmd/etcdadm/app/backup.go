package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"filippo.io/age"
	"github.com/spf13/cobra"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/backup"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/pipeline"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
)

func newBackupCommand(streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Scheduled, encrypted backups to an S3 bucket (spec.backup): take one now, list, check and verify them",
	}
	cmd.AddCommand(newBackupRunCommand(streams), newBackupNowCommand(streams), newBackupListCommand(streams),
		newBackupCheckCommand(streams), newBackupVerifyCommand(streams))
	return cmd
}

func newBackupRunCommand(streams Streams) *cobra.Command {
	var file string
	var now bool
	cmd := &cobra.Command{
		Use:   "run --config /etc/etcdadm/backup.yaml [--now]",
		Short: "On a member host (etcdadm-backup.service runs it): the backup of the schedule's period, taken by one member",
		Long: `run takes part in the cluster's backup of the current period of the schedule: a key held
under a lease in etcd decides which member takes it (the first to claim it; the others
wait for it, and take their turn if it fails or dies). That member streams a snapshot of
its own etcd, checks it as it passes (etcd's sha256 trailer, the revision and keys of its
pages), encrypts it with age for the configuration's recipients and uploads it to the
bucket in parts, never whole on disk or in memory: s3://BUCKET/<prefix><cluster>/<UTC
time>-r<revision>.db.age, with a JSON manifest next to it; then it prunes the bucket to
keep backups (never the newest whole one). The Prometheus textfile records every run.
--now takes a backup whatever the period's (etcdadm backup now runs it so). It exits
non-zero when the backup failed.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := backup.LoadHostConfig(file)
			if err != nil {
				return err
			}
			log := progress.NewLog(streams.progress())
			res, err := backup.Run(cmd.Context(), cfg, backup.RunOptions{Now: now, Log: log})
			if res != nil && res.Skipped != "" {
				fmt.Fprintf(streams.Out, "no backup taken here: %s\n", res.Skipped)
			}
			if res != nil && res.Manifest != nil {
				printManifest(streams, res.Manifest, cfg.S3.Bucket)
				for _, k := range res.Pruned {
					fmt.Fprintf(streams.Out, "pruned s3://%s/%s\n", cfg.S3.Bucket, k)
				}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&file, "config", backup.ConfigPath, "the backup configuration etcdadm apply wrote")
	cmd.Flags().BoolVar(&now, "now", false, "take a backup now, whether or not the period's is taken")
	return cmd
}

func printManifest(streams Streams, m *backup.Manifest, bucket string) {
	fmt.Fprintf(streams.Out, "backup taken: s3://%s/%s\n", bucket, m.Object)
	fmt.Fprintf(streams.Out, "  revision: %d\n  keys:     %d\n  size:     %d bytes (%d stored)\n  sha256:   %s (checked)\n  member:   %s (%s, etcd %s)\n  took:     %.1fs (%.1f MB/s)\n",
		m.Revision, m.Keys, m.Size, m.ObjectSize, m.SHA256, m.Member, m.MemberID, m.EtcdVersion, m.Seconds, float64(m.Size)/m.Seconds/1e6)
}

func newBackupNowCommand(streams Streams) *cobra.Command {
	f := &sshFlags{}
	var member string
	cmd := &cobra.Command{
		Use:   "now -f cluster.yaml [--member NAME]",
		Short: "Take a backup now, through a member host: its etcdadm backup run --now",
		Long: `now runs 'etcdadm backup run --now' on a member host (the first that can be reached, or
--member), over SSH: that host's etcdadm takes its turn (waiting for a backup under way)
and uploads a backup of its own etcd with the configuration apply installed. The S3
credentials never leave the hosts. --command-timeout bounds the whole backup.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			s, err := f.open(ctx, streams, progress.NewLog(streams.progress()), openOptions{Options: pipeline.Options{AnyHost: true}})
			if err != nil {
				return err
			}
			defer s.Close()
			if s.Cluster.Spec.Backup == nil {
				return noBackup(f.file)
			}
			var tried []string
			for _, h := range s.Cluster.Spec.Hosts {
				t := s.Hosts.T[h.Name]
				if (member != "" && h.Name != member) || t == nil {
					continue
				}
				s.Log.Host(h.Name, "taking a backup: %s backup run --now", backup.BinaryPath)
				out, err := t.Run(ctx, shell.Quote(backup.BinaryPath)+" backup run --now --config "+shell.Quote(backup.ConfigPath), nil)
				streams.Out.Write(out)
				if err != nil {
					return fmt.Errorf("backup through %s: %w", h.Name, err)
				}
				return nil
			}
			if member != "" {
				if _, ok := s.Cluster.Host(member); !ok {
					return &usageError{fmt.Errorf("invalid value %q for --member: no such member host in %s", member, f.file)}
				}
				tried = append(tried, member)
			}
			return fmt.Errorf("no member host could be reached to take the backup %v: %v", tried, s.Unreachable)
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVar(&member, "member", "", "the member host to take it through (default the first reachable)")
	if fl := cmd.Flags().Lookup("command-timeout"); fl != nil {
		fl.DefValue = "1h0m0s"
		_ = fl.Value.Set("1h")
	}
	return cmd
}

func noBackup(file string) error {
	return fmt.Errorf("%s has no spec.backup: add one (schedule, keep, encryption, s3) and run etcdadm apply", file)
}

// storeOf reaches the inventory's bucket from this machine.
func storeOf(c *config.Cluster, file string) (*backup.Store, error) {
	if c.Spec.Backup == nil {
		return nil, noBackup(file)
	}
	b := c.Spec.Backup
	return backup.NewStore(b.S3, b.Credentials, b.CA)
}

func loadStore(streams Streams, f *inventoryFlags) (*config.Cluster, *backup.Store, error) {
	c, err := f.load(streams)
	if err != nil {
		return nil, nil, err
	}
	s, err := storeOf(c, f.file)
	return c, s, err
}

// backupRow is a backup as list prints it.
type backupRow struct {
	Time     time.Time `json:"time"`
	Revision int64     `json:"revision,omitempty"`
	Keys     int       `json:"keys,omitempty"`
	Size     int64     `json:"size"`
	Member   string    `json:"member,omitempty"`
	Age      string    `json:"age"`
	Object   string    `json:"object"`
	Problem  string    `json:"problem,omitempty"`
}

func newBackupListCommand(streams Streams) *cobra.Command {
	f := &inventoryFlags{}
	var output string
	cmd := &cobra.Command{
		Use:   "list -f cluster.yaml [-o table|json]",
		Short: "List the cluster's backups in the bucket, newest first: time, revision, size, member, age",
		Long: `list reads the bucket of spec.backup from this machine (with spec.backup.s3's credentials)
and lists the cluster's backups, newest first, from their manifests; an object without
its manifest (an upload cut short) is listed with what is wrong. It writes nothing.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return &usageError{fmt.Errorf("invalid value %q for --output: use table or json", output)}
			}
			c, s, err := loadStore(streams, f)
			if err != nil {
				return err
			}
			backups, _, err := backup.Catalog(cmd.Context(), s, c.Metadata.Name)
			if err != nil {
				return err
			}
			now := time.Now()
			rows := []backupRow{}
			for _, b := range backups {
				r := backupRow{Time: b.Time().UTC(), Age: now.Sub(b.Time()).Round(time.Second).String(), Object: s.URL(b.Key), Problem: b.Problem}
				if b.Object != nil {
					r.Size = b.Object.Size
				}
				if m := b.Manifest; m != nil {
					r.Revision, r.Keys, r.Member = m.Revision, m.Keys, m.Member
				}
				rows = append(rows, r)
			}
			if output == "json" {
				enc := json.NewEncoder(streams.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					Backups []backupRow `json:"backups"`
				}{rows})
			}
			if len(rows) == 0 {
				fmt.Fprintf(streams.Out, "no backup of %s in %s\n", c.Metadata.Name, s.URL(s.ClusterDir(c.Metadata.Name)))
				return nil
			}
			tw := tabwriter.NewWriter(streams.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tREVISION\tKEYS\tSIZE\tMEMBER\tAGE\tOBJECT")
			for _, r := range rows {
				obj := r.Object
				if r.Problem != "" {
					obj += " (not whole: " + r.Problem + ")"
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\n", r.Time.Format(time.RFC3339), r.Revision, r.Keys, ops.Bytes(r.Size), orDash(r.Member), r.Age, obj)
			}
			return tw.Flush()
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func newBackupCheckCommand(streams Streams) *cobra.Command {
	f := &inventoryFlags{}
	var maxAge time.Duration
	cmd := &cobra.Command{
		Use:   "check -f cluster.yaml --max-age 24h",
		Short: "Exit 1 when the newest whole backup is older than --max-age (or there is none): for monitoring",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if maxAge <= 0 {
				return &usageError{fmt.Errorf("invalid value %s for --max-age: use a positive duration, e.g. 24h", maxAge)}
			}
			c, s, err := loadStore(streams, f)
			if err != nil {
				return err
			}
			backups, _, err := backup.Catalog(cmd.Context(), s, c.Metadata.Name)
			if err != nil {
				return err
			}
			latest := backup.Latest(backups)
			if latest == nil {
				return fmt.Errorf("no whole backup of %s in %s", c.Metadata.Name, s.URL(s.ClusterDir(c.Metadata.Name)))
			}
			age := time.Since(latest.Time()).Round(time.Second)
			if age > maxAge {
				return fmt.Errorf("the newest backup of %s, %s, is %s old, more than %s", c.Metadata.Name, s.URL(latest.Key), age, maxAge)
			}
			fmt.Fprintf(streams.Out, "the newest backup of %s is %s old: %s (revision %d)\n", c.Metadata.Name, age, s.URL(latest.Key), latest.Manifest.Revision)
			return nil
		},
	}
	f.bind(cmd)
	cmd.Flags().DurationVar(&maxAge, "max-age", 24*time.Hour, "how old the newest backup may be")
	return cmd
}

func newBackupVerifyCommand(streams Streams) *cobra.Command {
	f := &inventoryFlags{}
	var identity string
	var latest bool
	cmd := &cobra.Command{
		Use:   "verify -f cluster.yaml --identity KEY (OBJECT | --latest)",
		Short: "A restore drill: download, decrypt, check, restore into a scratch directory and serve it with a throwaway etcd",
		Long: `verify downloads a backup (s3://BUCKET/KEY, KEY, or the newest whole one with --latest),
decrypts it with the age identity in KEY, checks it as it arrives (etcd's sha256
trailer, against the manifest), checks its database (bbolt's check, as etcdutl snapshot
status does), restores it into a scratch data directory as etcd's own restore does, and
starts a throwaway etcd on it in this process, on loopback: the revision and number of
keys it serves must be the manifest's. It exits non-zero on any mismatch, naming the
object. The scratch directory is removed; nothing else is written.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 || (len(args) == 1) == latest {
				return &usageError{fmt.Errorf("%s takes one backup, OBJECT or --latest\nsee '%s --help'", cmd.CommandPath(), cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, s, err := loadStore(streams, f)
			if err != nil {
				return err
			}
			ids, err := identities(identity, c)
			if err != nil {
				return err
			}
			var key string
			if latest {
				backups, _, err := backup.Catalog(ctx, s, c.Metadata.Name)
				if err != nil {
					return err
				}
				l := backup.Latest(backups)
				if l == nil {
					return fmt.Errorf("no whole backup of %s in %s", c.Metadata.Name, s.URL(s.ClusterDir(c.Metadata.Name)))
				}
				key = l.Key
			} else if key, err = objectKey(s, args[0]); err != nil {
				return err
			}
			dir, err := os.MkdirTemp("", "etcdadm-verify-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			streams.progress().Info(fmt.Sprintf("verifying %s: download, decrypt, check, restore into a scratch directory, start etcd on it", s.URL(key)))
			start := time.Now()
			d, err := backup.Verify(ctx, s, key, ids, dir)
			if err != nil {
				return fmt.Errorf("verify failed: %w", err)
			}
			m := d.Manifest
			fmt.Fprintf(streams.Out, "verified %s in %s:\n", s.URL(m.Object), time.Since(start).Round(time.Millisecond))
			fmt.Fprintf(streams.Out, "  taken:    %s by %s (etcd %s)\n", m.TakenAt.Format(time.RFC3339), m.Member, m.EtcdVersion)
			fmt.Fprintf(streams.Out, "  sha256:   %s, %d bytes (as its manifest says)\n", m.SHA256, m.Size)
			fmt.Fprintf(streams.Out, "  database: checked by bbolt, revision %d, %d keys\n", d.Snapshot.Revision, d.Snapshot.Keys)
			fmt.Fprintf(streams.Out, "  restored: etcd serves revision %d and %d keys (as its manifest says)\n", d.Served.Revision, d.Served.Keys)
			return nil
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVar(&identity, "identity", "", "the age identity file (age-keygen's output) that decrypts the backups")
	cmd.Flags().BoolVar(&latest, "latest", false, "verify the newest whole backup")
	return cmd
}

// identities reads --identity; none is needed for backups stored
// unencrypted.
func identities(file string, c *config.Cluster) ([]age.Identity, error) {
	if file == "" {
		if c.Spec.Backup != nil && c.Spec.Backup.Encrypted() {
			return nil, &usageError{errors.New("--identity is required: the backups are encrypted; give the age identity file whose recipient spec.backup.encryption lists")}
		}
		return nil, nil
	}
	return backup.ReadIdentities(file)
}

// objectKey is the key of OBJECT: s3://BUCKET/KEY (the inventory's
// bucket) or KEY.
func objectKey(s *backup.Store, arg string) (string, error) {
	if bucket, key, ok := backup.ParseURL(arg); ok {
		if bucket != s.Bucket {
			return "", &usageError{fmt.Errorf("%s is in bucket %s, but spec.backup.s3.bucket is %s: etcdadm reads the inventory's bucket only", arg, bucket, s.Bucket)}
		}
		arg = key
	}
	if arg == "" || strings.HasSuffix(arg, "/") {
		return "", &usageError{fmt.Errorf("%q names no object: give s3://%s/KEY, as etcdadm backup list prints it", arg, s.Bucket)}
	}
	return strings.TrimSuffix(arg, ".json"), nil
}

// fetchFromStore downloads the backup OBJECT into a private temporary
// directory, for a restore: the file, and the directory to remove.
func fetchFromStore(ctx context.Context, streams Streams, c *config.Cluster, file, arg, identity string) (string, string, error) {
	s, err := storeOf(c, file)
	if err != nil {
		return "", "", err
	}
	key, err := objectKey(s, arg)
	if err != nil {
		return "", "", err
	}
	ids, err := identities(identity, c)
	if err != nil {
		return "", "", err
	}
	dir, err := os.MkdirTemp("", "etcdadm-restore-")
	if err != nil {
		return "", "", err
	}
	p := dir + "/backup.db"
	streams.progress().Info("downloading " + s.URL(key) + " to a private temporary directory")
	if _, _, err := backup.Fetch(ctx, s, key, ids, p); err != nil {
		os.RemoveAll(dir)
		return "", "", fmt.Errorf("not restoring: %w", err)
	}
	return p, dir, nil
}
