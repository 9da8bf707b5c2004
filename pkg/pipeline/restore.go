package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/execute"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/snapshot"
)

// Origin reads where file, whose checked content is info, comes from (its
// FILE.json) and says, in problem, why it may not be a snapshot of cluster
// c: no record, a record of another file, or of another cluster. The
// caller decides whether to go on (--force).
func Origin(c *config.Cluster, file string, info *snapshot.Info) (meta *snapshot.Meta, problem string, err error) {
	if meta, err = snapshot.ReadMeta(file); err != nil {
		return nil, "", err
	}
	switch {
	case meta == nil:
		problem = fmt.Sprintf("%s has no %s, so nothing says which cluster it is from", file, filepath.Base(snapshot.MetaPath(file)))
	case meta.SHA256 != info.SHA256:
		problem = fmt.Sprintf("%s describes another file (sha256 %s, this one is %s)", snapshot.MetaPath(file), meta.SHA256, info.SHA256)
	case meta.Cluster != c.Metadata.Name:
		problem = fmt.Sprintf("%s is a snapshot of cluster %q, taken from %s at %s; the inventory is cluster %q", file, meta.Cluster, meta.Member, meta.TakenAt.Format(time.RFC3339), c.Metadata.Name)
	}
	return meta, problem, nil
}

// RestoreOutcome is what a restore found and did.
type RestoreOutcome struct {
	Outcome
	// Revision is the cluster's revision after the restore; 0 when it
	// could not be read.
	Revision int64
	// List is the restored cluster's member list.
	List *etcdclient.MemberList
}

// Restore replaces every member's data with the snapshot file (checked by
// the caller): a plan that makes the data directories here, pushes them,
// stops every member, swaps the data and starts the new cluster.
func Restore(ctx context.Context, s *Session, file string, o ConvergeOptions, h Hooks) (*RestoreOutcome, error) {
	if s.PKI.CACreated {
		return nil, fmt.Errorf("%s has no etcd CA: a restore keeps the cluster's certificates; copy the PKI from where it was created", s.PKI.Dir)
	}
	f, err := s.Gather(ctx, !o.DryRun)
	if err != nil {
		return nil, err
	}
	out := &RestoreOutcome{Outcome: Outcome{Facts: f}}
	now := time.Now()
	src := plan.RestoreSource{File: file, Dir: "(made here)", Token: fmt.Sprintf("%s-%s", s.Cluster.Metadata.Name, now.UTC().Format("20060102T150405Z"))}
	if !o.DryRun {
		if src.Dir, err = os.MkdirTemp("", "etcdadm-restore-"); err != nil {
			return out, err
		}
		defer os.RemoveAll(src.Dir)
	}
	if out.Plan, err = plan.Restore(s.Input(f, now), src); err != nil || o.DryRun {
		return out, err
	}
	if h.Confirm != nil {
		if err := h.Confirm(out.Plan); err != nil {
			return out, err
		}
	}
	if out.Result, err = s.Execute(ctx, out.Plan, o.ExecOptions, h); err != nil {
		return out, fmt.Errorf("restore: %w; the old data of each host that got that far is under %s", err, execute.DefaultBackupDir)
	}
	if out.List, err = s.Etcd.MemberList(ctx, ops.ClientURLs(s.Cluster), s.opts.EtcdTimeout); err != nil {
		return out, err
	}
	out.Members = s.Etcd.Status(ctx, ops.Endpoints(s.Cluster), s.opts.EtcdTimeout)
	if r, err := s.Etcd.Revision(ctx, ops.ClientURLs(s.Cluster), s.opts.EtcdTimeout); err == nil {
		out.Revision = r
	}
	if bad := etcdclient.Unhealthy(out.Members); len(bad) > 0 {
		return out, fmt.Errorf("members not healthy after the restore: %v", bad)
	}
	return out, nil
}
