package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcdadm-io/etcdadm/internal/atomicfile"
	"github.com/etcdadm-io/etcdadm/pkg/backup"
	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/execute"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/pipeline"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
	"github.com/etcdadm-io/etcdadm/pkg/snapshot"
)

func newSnapshotCommand(streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Save the cluster's data to this machine, or restore the whole cluster from it",
	}
	cmd.AddCommand(newSnapshotSaveCommand(streams), newSnapshotRestoreCommand(streams))
	return cmd
}

func newSnapshotSaveCommand(streams Streams) *cobra.Command {
	f := &sshFlags{}
	var out, member string
	var encrypt bool
	cmd := &cobra.Command{
		Use:   "save -f cluster.yaml [-o FILE|s3://BUCKET/[KEY]] [--encrypt] [--member NAME]",
		Short: "Stream a snapshot from a healthy member to this machine, checked and written atomically (mode 0600)",
		Long: `save takes a snapshot of a healthy member (the leader unless --member names another),
over mutual TLS, through the host's SSH connection when its port 2379 cannot be reached
from here. A database of more than a few megabytes is read at the SSH connection's speed:
the member starts its snapshot and holds it open (etcd's read transaction, which keeps
the database's pages from being reused) while its database file is read through the
host's SSH connection, then says it still held it; the head (the meta pages) is the
member's own, and the sha256 that etcd appends is computed here. When the file cannot be
read so, or the database is small, etcd streams the snapshot. The file is written next to
its final name, checked (the sha256, then the database's structure), synced and renamed,
with mode 0600; a truncated, corrupted or cut read leaves no file. FILE.json records
where it came from and how it was read. The default FILE is
snapshots/<cluster>-<UTC time>.db next to the inventory.

--encrypt writes FILE encrypted with age for spec.backup.encryption's recipients
(FILE.age by default), checked as it streams (the sha256 trailer, the revision and keys
of its pages): the snapshot is never on this machine's disk in the clear. -o
s3://BUCKET/KEY streams it to spec.backup's bucket instead, the way the scheduled
backups go (encrypted as spec.backup.encryption says), with its manifest; a KEY that
is empty or ends with / names it <prefix><cluster>/<UTC time>-r<revision>.db.age.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			s, err := f.open(ctx, streams, progress.NewLog(streams.progress()), openOptions{Options: pipeline.Options{AnyHost: true}})
			if err != nil {
				return err
			}
			defer s.Close()
			if err := s.NeedEtcd("etcdadm cannot authenticate to the cluster"); err != nil {
				return err
			}
			dst := out
			if dst == "" {
				dst = filepath.Join(plan.SnapshotDir(s.Cluster), snapshot.DefaultName(s.Cluster.Metadata.Name, time.Now()))
				if encrypt {
					dst += ".age"
				}
			}
			src, err := ops.SnapshotSource(ctx, s.Cluster, s.Etcd, member, f.etcdTimeout)
			if err != nil {
				return err
			}
			if encrypt || strings.HasPrefix(dst, "s3://") {
				return saveEncrypted(ctx, streams, s, f.file, src, dst)
			}
			s.Log.Printf("streaming a snapshot from %s (%s) to %s", src.Name, src.Endpoint, dst)
			start := time.Now()
			info, err := ops.SaveSnapshot(ctx, s.Cluster, s.Etcd, src, dst, ops.SaveOptions{Host: s.Hosts.T[src.Name], Log: s.Log})
			if err != nil {
				return err
			}
			took := time.Since(start)
			sum := newSummary(streams, "text")
			sum.printf("snapshot saved: %s", info.Path)
			printSnapshotInfo(sum, info)
			sum.printf("  member:   %s (%s, etcd %s)", src.Name, src.ID, src.Version)
			if info.Read == snapshot.ReadHeldFile {
				sum.printf("  read:     the member's database file, through %s's SSH connection, while the member held the snapshot open", src.Name)
			} else {
				sum.printf("  read:     etcd's snapshot stream")
			}
			sum.printf("  took:     %s (%.1f MB/s)", took.Round(time.Millisecond), float64(info.Size)/took.Seconds()/1e6)
			return nil
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVarP(&out, "output", "o", "", "the snapshot file (default snapshots/<cluster>-<UTC time>.db next to the inventory)")
	cmd.Flags().StringVar(&member, "member", "", "the member to stream from (default the leader)")
	cmd.Flags().BoolVar(&encrypt, "encrypt", false, "encrypt with age for spec.backup.encryption's recipients (never on disk in the clear)")
	return cmd
}

func printSnapshotInfo(sum *summary, info *snapshot.Info) {
	sum.printf("  revision: %d", info.Revision)
	sum.printf("  keys:     %d", info.Keys)
	sum.printf("  size:     %d bytes", info.Size)
	sum.printf("  sha256:   %s (checked)", info.SHA256)
	sum.printf("  hash:     %08x (CRC-32C of the buckets, as etcdutl snapshot status prints it)", info.Hash)
	if info.StorageVersion != "" {
		sum.printf("  storage:  etcd %s", info.StorageVersion)
	}
}

func newSnapshotRestoreCommand(streams Streams) *cobra.Command {
	f := &changeFlags{}
	var force, abort bool
	var identity string
	cmd := &cobra.Command{
		Use:   "restore -f cluster.yaml (FILE | s3://BUCKET/KEY [--identity KEY] | --abort)",
		Short: "Replace every member's data with a snapshot: a new cluster of the inventory's hosts",
		Long: `restore checks FILE first (its sha256 trailer and its database), and that it is a
snapshot of this cluster (FILE.json, written by 'etcdadm snapshot save'; --force accepts
another's, or one without it), and that every host has room for its data next to its data
directory, and this machine for the data directories it makes (in TMPDIR). It then asks
for confirmation (--yes for scripts), records the restore on this machine (snapshots/
restore-in-progress.json) and on every host (/var/lib/etcdadm/pending/restore-SHA256-TOKEN),
makes each member's data directory here, with etcd's own restore code: that member's
name, the whole --initial-cluster, a new cluster token, the revision bumped by
1,000,000,000 and marked compacted so that Kubernetes' watches start over. Every host
receives its data while the cluster still runs; then every member stops (its manifest
goes under the backup directory), its data directory's contents go under
/var/lib/etcdadm/backup (kept for good: never pruned), the restored data takes their
place, and every member starts. Once all are healthy, the staged data and the records
go. The members have new IDs. Stop the kube-apiservers first, and restart them
afterwards.

While a restore is recorded, every other command that would start etcd refuses. A
restore cut short is finished by running it again with the same FILE: the hosts restored
already keep their data. --abort goes back instead: each host whose data was replaced
gets its old data back from the backup directory, and every member starts on it; it is
refused where that cannot be done (a host unreachable, its old data gone, or the
restored cluster running with quorum).

s3://BUCKET/KEY restores a backup of spec.backup's bucket (as etcdadm backup list
names it): it is downloaded into a private temporary directory, decrypted with the age
identity in --identity KEY and checked against its manifest as it arrives, and its
manifest says which cluster it is from; then every check and guard above applies.`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case abort && len(args) > 0:
				return &usageError{fmt.Errorf("%s --abort takes no snapshot file, got %q: it goes back to the data the hosts had before the unfinished restore\nsee '%s --help'", cmd.CommandPath(), args, cmd.CommandPath())}
			case !abort && len(args) != 1:
				return &usageError{fmt.Errorf("%s takes the snapshot file, got %d arguments\nsee '%s --help'", cmd.CommandPath(), len(args), cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if abort {
				if force {
					return &usageError{fmt.Errorf("--force is incompatible with --abort: it accepts a snapshot, and --abort restores none")}
				}
				if identity != "" {
					return &usageError{fmt.Errorf("--identity is incompatible with --abort: it decrypts a backup, and --abort restores none")}
				}
				return abortRestore(cmd.Context(), streams, f)
			}
			return restoreSnapshot(cmd.Context(), streams, f, args[0], force, identity)
		},
	}
	f.bind(cmd)
	cmd.Flags().BoolVar(&force, "force", false, "restore a snapshot of another cluster, or one whose origin is not recorded")
	cmd.Flags().BoolVar(&abort, "abort", false, "go back from an unfinished restore to the data the hosts had before it")
	cmd.Flags().StringVar(&identity, "identity", "", "the age identity file that decrypts a backup restored from s3://")
	return cmd
}

// restoreChecks refuses flags a restore or its abort cannot run with.
func restoreChecks(streams Streams, f *changeFlags, what string) error {
	if f.keepBackups < 0 {
		return &usageError{fmt.Errorf("invalid value %d for --keep-backups: use 0 (keep all) or more", f.keepBackups)}
	}
	if !f.yes && !f.dryRun && !isTerminal(streams) {
		return fmt.Errorf("refusing to %s without confirmation: run it on a terminal, or pass --yes", what)
	}
	return nil
}

func restoreSnapshot(ctx context.Context, streams Streams, f *changeFlags, file string, force bool, identity string) (err error) {
	if err := f.check(); err != nil {
		return err
	}
	c, err := f.load(streams)
	if err != nil {
		return err
	}
	if strings.HasPrefix(file, "s3://") {
		local, tmp, err := fetchFromStore(ctx, streams, c, f.file, file, identity)
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		streams.progress().Info(fmt.Sprintf("%s downloaded, decrypted and checked against its manifest", file))
		file = local
	} else if identity != "" {
		return &usageError{fmt.Errorf("--identity is for a backup restored from s3://; %s is a file", file)}
	}
	info, err := snapshot.Verify(file)
	if err != nil {
		return fmt.Errorf("not restoring: %w", err)
	}
	// With -o json, stdout holds only the plan (--dry-run) or the result.
	sum := newSummary(streams, f.output)
	sum.printf("snapshot %s checks out:", file)
	printSnapshotInfo(sum, info)
	meta, origin, err := pipeline.Origin(c, file, info)
	if err != nil {
		return err
	}
	if origin != "" && !force {
		return fmt.Errorf("not restoring: %s; pass --force if it is the data this cluster must have", origin)
	}
	if origin != "" {
		streams.progress().Warn(origin + " (--force)")
	} else {
		sum.printf("  taken:    from %s of cluster %s at %s", meta.Member, meta.Cluster, meta.TakenAt.Format(time.RFC3339))
	}
	what := "restore " + filepath.Base(file)
	if err := restoreChecks(streams, f, what); err != nil {
		return err
	}
	s, err := f.open(ctx, streams, progress.NewLog(streams.progress()), openOptions{Options: pipeline.Options{LockPKI: !f.dryRun, ControlPlane: true}})
	if err != nil {
		return err
	}
	defer s.Close()
	question := fmt.Sprintf("replace the data of every member of cluster %s with %s (revision %d)? The members stop until it is done", s.Cluster.Metadata.Name, file, info.Revision)
	start := time.Now()
	out, err := pipeline.Restore(ctx, s, file, info, f.convergeOptions(), pipeline.Hooks{
		Confirm: func(p *plan.Plan) error {
			defer func() { start = time.Now() }()
			return confirmPlan(ctx, streams, f.yes, sum, p, question, what)
		},
		Saved: func(events []certs.Event) { printCertEvents(streams, events, false) },
	})
	return reportRestore(streams, f, sum, out, err, func() {
		sum.printf("restored in %s: %s", time.Since(start).Round(time.Millisecond), describeMembers(out.List.Members))
		next := "restart the kube-apiservers, then the controllers and kubelets that watch them"
		if stoppedControlPlane(out.Plan) {
			next = "the kube-apiservers, controller managers and schedulers started again on it; restart the kubelets that watch them"
		}
		sum.printf("revision %d (the snapshot's %d, bumped by %d); %s", out.Revision, info.Revision, int64(snapshot.RevisionBump), next)
	})
}

func abortRestore(ctx context.Context, streams Streams, f *changeFlags) (err error) {
	what := "abort the restore"
	if err := f.check(); err != nil {
		return err
	}
	if err := restoreChecks(streams, f, what); err != nil {
		return err
	}
	s, err := f.open(ctx, streams, progress.NewLog(streams.progress()), openOptions{Options: pipeline.Options{LockPKI: !f.dryRun, ControlPlane: true}})
	if err != nil {
		return err
	}
	defer s.Close()
	sum := newSummary(streams, f.output)
	question := fmt.Sprintf("put back the data the members of cluster %s had before the unfinished restore? The members whose data was replaced stop until it is done", s.Cluster.Metadata.Name)
	start := time.Now()
	out, err := pipeline.AbortRestore(ctx, s, f.convergeOptions(), pipeline.Hooks{
		Confirm: func(p *plan.Plan) error {
			defer func() { start = time.Now() }()
			return confirmPlan(ctx, streams, f.yes, sum, p, question, what)
		},
	})
	if err == nil && out != nil && out.Plan != nil && out.Result == nil && !f.dryRun {
		for _, w := range out.Plan.Warnings {
			sum.printf("%s", w)
		}
		sum.printf("restore aborted: no host had changed")
		return sum.done(nil)
	}
	return reportRestore(streams, f, sum, out, err, func() {
		sum.printf("restore aborted in %s: back on the old data: %s", time.Since(start).Round(time.Millisecond), describeMembers(out.List.Members))
	})
}

// convergeOptions are the restore's options from its flags.
func (f *changeFlags) convergeOptions() pipeline.ConvergeOptions {
	return pipeline.ConvergeOptions{DryRun: f.dryRun, ExecOptions: pipeline.ExecOptions{HealthTimeout: f.healthTimeout, KeepBackups: f.keepBackups}}
}

// reportRestore prints what a restore or its abort did, however it ended;
// done adds the lines of a run that reached the members' health.
func reportRestore(streams Streams, f *changeFlags, sum *summary, out *pipeline.RestoreOutcome, err error, done func()) error {
	switch {
	case out == nil || out.Plan == nil:
		return err
	case f.dryRun:
		if perr := f.print(streams, out.Plan); perr != nil {
			return perr
		}
		return err
	case out.Result == nil:
		return err
	}
	sum.add(out.Result)
	if out.List != nil {
		healthy, total := execute.Summary(out.Members)
		sum.members(out.Members)
		sum.printf("%d/%d members healthy", healthy, total)
		done()
	}
	return sum.done(err)
}

// stoppedControlPlane reports whether p stopped a control plane (and so
// started it again).
func stoppedControlPlane(p *plan.Plan) bool {
	for _, st := range p.Stages {
		for _, h := range st.Hosts {
			for _, op := range h.Ops {
				if op.Kind() == ops.KindStopControlPlane {
					return true
				}
			}
		}
	}
	return false
}

// saveEncrypted streams a snapshot from src, checked as it passes, to
// spec.backup's bucket (dst s3://BUCKET/[KEY]) or encrypted to the file
// dst: the path the scheduled backups take.
func saveEncrypted(ctx context.Context, streams Streams, s *pipeline.Session, file string, src etcdclient.MemberStatus, dst string) error {
	b := s.Cluster.Spec.Backup
	if b == nil {
		return fmt.Errorf("--encrypt and -o s3:// take their recipients and bucket from spec.backup: %w", noBackup(file))
	}
	recipients, err := b.AgeRecipients()
	if err != nil {
		return err
	}
	rc, version, err := s.Etcd.Snapshot(ctx, src.Endpoint)
	if err != nil {
		return err
	}
	defer rc.Close()
	start := time.Now()
	sum := newSummary(streams, "text")
	if strings.HasPrefix(dst, "s3://") {
		store, err := storeOf(s.Cluster, file)
		if err != nil {
			return err
		}
		bucket, key, _ := backup.ParseURL(dst)
		if bucket != store.Bucket {
			return &usageError{fmt.Errorf("invalid value %s for --output: the bucket is spec.backup.s3.bucket, %s", dst, store.Bucket)}
		}
		if strings.HasSuffix(key, "/") || key == "" {
			key = ""
		}
		s.Log.Printf("streaming a snapshot from %s (%s) to %s", src.Name, src.Endpoint, dst)
		m, err := backup.Save(ctx, store, key, backup.Source{Stream: rc, Cluster: s.Cluster.Metadata.Name, Member: src.Name, MemberID: src.ID,
			EtcdVersion: src.Version, StorageVersion: version}, recipients, b.Encryption.Recipients, nil)
		if err != nil {
			return err
		}
		printManifest(streams, m, store.Bucket)
		return nil
	}
	if len(recipients) == 0 {
		return &usageError{fmt.Errorf("--encrypt: spec.backup.encryption has no recipients to encrypt for")}
	}
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("%s exists: choose another name with -o", dst)
	}
	s.Log.Printf("streaming a snapshot from %s (%s) to %s, encrypted", src.Name, src.Endpoint, dst)
	var info *snapshot.Info
	write := func(w io.Writer) (err error) {
		info, err = backup.Encode(w, rc, recipients)
		return err
	}
	if err := atomicfile.WriteFrom(dst, 0o600, 0o700, write, nil); err != nil {
		return fmt.Errorf("snapshot from %s: %w", src.Name, err)
	}
	meta := snapshot.Meta{Cluster: s.Cluster.Metadata.Name, Member: src.Name, MemberID: src.ID, Endpoint: src.Endpoint, ServerVersion: version, TakenAt: start.UTC(), Info: *info}
	meta.Path = dst
	mb, _ := json.MarshalIndent(meta, "", "  ")
	if err := atomicfile.Write(snapshot.MetaPath(dst), append(mb, '\n'), 0o600, 0o700); err != nil {
		os.Remove(dst)
		return err
	}
	took := time.Since(start)
	sum.printf("snapshot saved, encrypted for %s: %s", strings.Join(b.Encryption.Recipients, ", "), dst)
	sum.printf("  revision: %d", info.Revision)
	sum.printf("  keys:     %d", info.Keys)
	sum.printf("  size:     %d bytes before encryption", info.Size)
	sum.printf("  sha256:   %s (checked)", info.SHA256)
	sum.printf("  member:   %s (%s, etcd %s)", src.Name, src.ID, src.Version)
	sum.printf("  took:     %s (%.1f MB/s)", took.Round(time.Millisecond), float64(info.Size)/took.Seconds()/1e6)
	return nil
}
