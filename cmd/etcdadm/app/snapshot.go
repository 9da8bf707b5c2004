package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/execute"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
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
	cmd := &cobra.Command{
		Use:   "save -f cluster.yaml [-o FILE] [--member NAME]",
		Short: "Stream a snapshot from a healthy member to this machine, checked and written atomically (mode 0600)",
		Long: `save streams the database of a healthy member (the leader unless --member names
another) over mutual TLS, through the host's SSH connection when its port 2379 cannot be
reached from here. The file is written next to its final name, checked (the sha256 etcd
appends, then the database's structure), synced and renamed, with mode 0600; a truncated
or corrupted stream leaves no file. FILE.json records where it came from. The default
FILE is snapshots/<cluster>-<UTC time>.db next to the inventory.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			s, err := f.open(ctx, streams, progress.NewLog(streams.progress()), openOptions{anyHost: true})
			if err != nil {
				return err
			}
			defer s.close()
			if s.etcd == nil {
				return fmt.Errorf("%s has no etcd CA: etcdadm cannot authenticate to the cluster; copy the PKI from where it was created", s.pki.Dir)
			}
			dst := out
			if dst == "" {
				dst = filepath.Join(plan.SnapshotDir(s.cluster), snapshot.DefaultName(s.cluster.Metadata.Name, time.Now()))
			}
			src, err := ops.SnapshotSource(ctx, s.cluster, s.etcd, member, f.etcdTimeout)
			if err != nil {
				return err
			}
			s.log.Printf("streaming a snapshot from %s (%s) to %s", src.Name, src.Endpoint, dst)
			start := time.Now()
			info, err := ops.SaveSnapshot(ctx, s.cluster, s.etcd, src, dst)
			if err != nil {
				return err
			}
			took := time.Since(start)
			sum := newSummary(streams, "text")
			sum.printf("snapshot saved: %s", info.Path)
			printSnapshotInfo(sum, info)
			sum.printf("  member:   %s (%s, etcd %s)", src.Name, src.ID, src.Version)
			sum.printf("  took:     %s (%.1f MB/s)", took.Round(time.Millisecond), float64(info.Size)/took.Seconds()/1e6)
			return nil
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVarP(&out, "output", "o", "", "the snapshot file (default snapshots/<cluster>-<UTC time>.db next to the inventory)")
	cmd.Flags().StringVar(&member, "member", "", "the member to stream from (default the leader)")
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
	var force bool
	cmd := &cobra.Command{
		Use:   "restore -f cluster.yaml FILE",
		Short: "Replace every member's data with a snapshot: a new cluster of the inventory's hosts",
		Long: `restore checks FILE first (its sha256 trailer and its database), and that it is a
snapshot of this cluster (FILE.json, written by 'etcdadm snapshot save'; --force accepts
another's, or one without it). It then asks for confirmation (--yes for scripts), makes
each member's data directory here, with etcd's own restore code: that member's name, the
whole --initial-cluster, a new cluster token, the revision bumped by 1,000,000,000 and
marked compacted so that Kubernetes' watches start over. Every host receives its data
while the cluster still runs; then every member stops (its manifest goes under the backup
directory), its data directory's contents go under /var/lib/etcdadm/backup (never
deleted), the restored data takes their place, and every member starts. The members have
new IDs. Stop the kube-apiservers first, and restart them afterwards.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return &usageError{fmt.Errorf("%s takes the snapshot file, got %d arguments\nsee '%s --help'", cmd.CommandPath(), len(args), cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return restoreSnapshot(cmd.Context(), streams, f, args[0], force)
		},
	}
	f.bind(cmd)
	cmd.Flags().BoolVar(&force, "force", false, "restore a snapshot of another cluster, or one whose origin is not recorded")
	return cmd
}

func restoreSnapshot(ctx context.Context, streams Streams, f *changeFlags, file string, force bool) (err error) {
	if err := f.check(); err != nil {
		return err
	}
	c, err := f.load(streams)
	if err != nil {
		return err
	}
	info, err := snapshot.Verify(file)
	if err != nil {
		return fmt.Errorf("not restoring: %w", err)
	}
	// With -o json, stdout holds only the plan (--dry-run) or the result.
	sum := newSummary(streams, f.output)
	sum.printf("snapshot %s checks out:", file)
	printSnapshotInfo(sum, info)
	meta, err := snapshot.ReadMeta(file)
	if err != nil {
		return err
	}
	var origin error
	switch {
	case meta == nil:
		origin = fmt.Errorf("%s has no %s, so nothing says which cluster it is from", file, filepath.Base(snapshot.MetaPath(file)))
	case meta.SHA256 != info.SHA256:
		origin = fmt.Errorf("%s describes another file (sha256 %s, this one is %s)", snapshot.MetaPath(file), meta.SHA256, info.SHA256)
	case meta.Cluster != c.Metadata.Name:
		origin = fmt.Errorf("%s is a snapshot of cluster %q, taken from %s at %s; the inventory is cluster %q", file, meta.Cluster, meta.Member, meta.TakenAt.Format(time.RFC3339), c.Metadata.Name)
	}
	if origin != nil && !force {
		return fmt.Errorf("not restoring: %w; pass --force if it is the data this cluster must have", origin)
	}
	if origin != nil {
		streams.progress().Warn(fmt.Sprintf("%v (--force)", origin))
	} else {
		sum.printf("  taken:    from %s of cluster %s at %s", meta.Member, meta.Cluster, meta.TakenAt.Format(time.RFC3339))
	}
	what := "restore " + filepath.Base(file)
	if !f.yes && !f.dryRun && !isTerminal(streams) {
		return fmt.Errorf("refusing to %s without confirmation: run it on a terminal, or pass --yes", what)
	}
	log := progress.NewLog(streams.progress())
	s, err := f.open(ctx, streams, log, openOptions{lockPKI: !f.dryRun})
	if err != nil {
		return err
	}
	defer s.close()
	if s.pki.CACreated {
		return fmt.Errorf("%s has no etcd CA: a restore keeps the cluster's certificates; copy the PKI from where it was created", s.pki.Dir)
	}
	facts, err := s.gather(ctx, &f.sshFlags, !f.dryRun)
	if err != nil {
		return err
	}
	work := ""
	staged := map[string]string{}
	for _, h := range s.cluster.Spec.Hosts {
		staged[h.Name] = filepath.Join("(made here)", h.Name)
	}
	if !f.dryRun {
		if work, err = os.MkdirTemp("", "etcdadm-restore-"); err != nil {
			return err
		}
		defer os.RemoveAll(work)
		for _, h := range s.cluster.Spec.Hosts {
			staged[h.Name] = filepath.Join(work, h.Name)
		}
	}
	now := time.Now()
	in := plan.Input{Cluster: s.cluster, Runtime: s.rt, PKI: s.pki, Hosts: facts.Hosts, Etcd: facts.Etcd, Now: now}
	p, err := plan.Restore(in, staged)
	if err != nil {
		if p != nil && f.dryRun {
			_ = f.print(streams, p)
		}
		return err
	}
	if f.dryRun {
		return f.print(streams, p)
	}
	sum.warn(p.Warnings)
	if !f.yes {
		plan.WriteText(streams.ErrOut, p)
		ok, err := confirm(ctx, streams, fmt.Sprintf("replace the data of every member of cluster %s with %s (revision %d)? The members stop until it is done", s.cluster.Metadata.Name, file, info.Revision))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%s: not confirmed, nothing changed", what)
		}
	}
	var members []snapshot.RestoreMember
	for _, h := range s.cluster.Spec.Hosts {
		members = append(members, snapshot.RestoreMember{Name: h.Name, PeerURL: manifests.PeerURL(h)})
	}
	token := fmt.Sprintf("%s-%s", s.cluster.Metadata.Name, now.UTC().Format("20060102T150405Z"))
	start := time.Now()
	if err := snapshot.Prepare(file, work, members, token); err != nil {
		return err
	}
	log.Printf("made %d data directories from the snapshot in %s (cluster token %s)", len(members), time.Since(start).Round(time.Millisecond), token)
	if f.keepBackups < 0 {
		return &usageError{fmt.Errorf("invalid value %d for --keep-backups: use 0 (keep all) or more", f.keepBackups)}
	}
	x := &execute.Executor{Cluster: s.cluster, Runtime: s.rt, Hosts: s.hosts, Etcd: s.etcd, Log: s.log, HealthTimeout: f.healthTimeout, Concurrency: f.concurrency, KeepBackups: f.keepBackups}
	res, err := x.Run(ctx, p)
	sum.add(res)
	// What the run did is reported however it ends.
	defer func() { err = sum.done(err) }()
	if err != nil {
		return fmt.Errorf("restore: %w; the old data of each host that got that far is under %s", err, execute.DefaultBackupDir)
	}
	list, err := s.etcd.MemberList(ctx, allClientURLs(s), f.etcdTimeout)
	if err != nil {
		return err
	}
	sts := s.etcd.Status(ctx, ops.Endpoints(s.cluster), f.etcdTimeout)
	healthy, total := execute.Summary(sts)
	var rev int64
	if r, err := s.etcd.Revision(ctx, allClientURLs(s), f.etcdTimeout); err == nil {
		rev = r
	}
	sum.members(sts)
	sum.printf("restored in %s: %d/%d members healthy: %s", time.Since(start).Round(time.Millisecond), healthy, total, describeMembers(list.Members))
	sum.printf("revision %d (the snapshot's %d, bumped by %d); restart the kube-apiservers, then the controllers and kubelets that watch them", rev, info.Revision, int64(snapshot.RevisionBump))
	if healthy < total {
		return fmt.Errorf("members not healthy after the restore: %v", etcdclient.Unhealthy(sts))
	}
	return nil
}
