package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/execute"
	"github.com/etcdadm-io/etcdadm/pkg/hosts"
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

// Restore replaces every member's data with the snapshot file, whose
// checked content is info (see plan.Restore). Before the plan is run this
// machine records the restore in its snapshots directory, as the plan's
// first stage does on every host; both records go once every member of the
// restored cluster is healthy. A restore cut short is finished by running
// it again with the same file: the token comes from the records. The data
// directories are made in a private temporary directory, removed however
// the run ends but for a second Ctrl-C, which exits at once: the record
// names it, and the next restore or abort removes it.
func Restore(ctx context.Context, s *Session, file string, info *snapshot.Info, o ConvergeOptions, h Hooks) (*RestoreOutcome, error) {
	if s.PKI.CACreated {
		return nil, fmt.Errorf("%s has no etcd CA: a restore keeps the cluster's certificates; copy the PKI from where it was created", s.PKI.Dir)
	}
	f, err := s.Gather(ctx, !o.DryRun)
	if err != nil {
		return nil, err
	}
	out := &RestoreOutcome{Outcome: Outcome{Facts: f}}
	now := time.Now()
	in := s.Input(f, now)
	src := plan.RestoreSource{File: file, SHA256: info.SHA256, Size: info.Size, Dir: "(made here)",
		Token: fmt.Sprintf("%s-%s", s.Cluster.Metadata.Name, now.UTC().Format("20060102T150405Z")), LocalFree: freeBytes(os.TempDir())}
	if tok, err := plan.RestoreToken(in, src); err == nil {
		src.Token = tok
	}
	src.Free = s.restoreRoom(ctx)
	if !o.DryRun {
		if src.Dir, err = os.MkdirTemp("", "etcdadm-restore-"+s.Cluster.Metadata.Name+"-"); err != nil {
			return out, fmt.Errorf("make the restore's data directories here: %w", err)
		}
		defer os.RemoveAll(src.Dir)
	}
	if out.Plan, err = plan.Restore(in, src); err != nil || o.DryRun {
		return out, err
	}
	if h.Confirm != nil {
		if err := h.Confirm(out.Plan); err != nil {
			return out, err
		}
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return out, err
	}
	rec := &snapshot.Record{Cluster: s.Cluster.Metadata.Name, File: abs, SHA256: info.SHA256, Token: src.Token, Started: now.UTC(), TempDir: src.Dir}
	if old := s.restore; old != nil && old.TempDir != "" && old.TempDir != src.Dir {
		// What a run cut by a second Ctrl-C left here.
		if err := os.RemoveAll(old.TempDir); err != nil {
			s.Log.Logger().Warn(fmt.Sprintf("could not remove %s, which a cut restore left: %v", old.TempDir, err))
		}
	}
	if err := rec.Save(snapshot.Dir(s.Cluster)); err != nil {
		return out, err
	}
	if out.Result, err = s.Execute(ctx, out.Plan, o.ExecOptions, h); err != nil {
		return out, fmt.Errorf("restore: %w; the restore is recorded on the hosts and here: run `etcdadm snapshot restore %s --yes` again to finish it, or `etcdadm snapshot restore --abort --yes` to go back to the old data (each host that got that far keeps it under %s)",
			err, shell.Quote(abs), execute.DefaultBackupDir)
	}
	if err := snapshot.RemoveRecord(snapshot.Dir(s.Cluster), rec); err != nil {
		return out, err
	}
	return out, s.restoredHealth(ctx, out)
}

// restoredHealth reads the member list, the statuses and the revision of
// the cluster a restore (or its abort) left.
func (s *Session) restoredHealth(ctx context.Context, out *RestoreOutcome) error {
	var err error
	if out.List, err = s.Etcd.MemberList(ctx, ops.ClientURLs(s.Cluster), s.opts.EtcdTimeout); err != nil {
		return err
	}
	out.Members = s.Etcd.Status(ctx, ops.Endpoints(s.Cluster), s.opts.EtcdTimeout)
	if r, err := s.Etcd.Revision(ctx, ops.ClientURLs(s.Cluster), s.opts.EtcdTimeout); err == nil {
		out.Revision = r
	}
	if bad := etcdclient.Unhealthy(out.Members); len(bad) > 0 {
		return fmt.Errorf("members not healthy: %v", bad)
	}
	return nil
}

// AbortRestore goes back from an unfinished restore to the data the hosts
// had before it (see plan.AbortRestore), then removes this machine's
// record and what it names.
func AbortRestore(ctx context.Context, s *Session, o ConvergeOptions, h Hooks) (*RestoreOutcome, error) {
	if err := s.NeedEtcd("the members' health cannot be read"); err != nil {
		return nil, err
	}
	f, err := s.Gather(ctx, !o.DryRun)
	if err != nil {
		return nil, err
	}
	out := &RestoreOutcome{Outcome: Outcome{Facts: f}}
	if out.Plan, err = plan.AbortRestore(s.Input(f, time.Now())); err != nil || o.DryRun {
		return out, err
	}
	if len(out.Plan.Stages) > 0 {
		if h.Confirm != nil {
			if err := h.Confirm(out.Plan); err != nil {
				return out, err
			}
		}
		if out.Result, err = s.Execute(ctx, out.Plan, o.ExecOptions, h); err != nil {
			return out, fmt.Errorf("abort: %w; run `etcdadm snapshot restore --abort --yes` again to go on", err)
		}
	}
	if err := snapshot.RemoveRecord(snapshot.Dir(s.Cluster), s.restore); err != nil {
		return out, err
	}
	if len(out.Plan.Stages) == 0 {
		return out, nil
	}
	return out, s.restoredHealth(ctx, out)
}

// restoreRoom reads, on every host, the room on the file system where a
// restore stages its data (plan.RestoreStaging), counting what a cut run
// staged there as room: it is replaced. A host that does not say is left
// out (unknown). It writes nothing.
func (s *Session) restoreRoom(ctx context.Context) map[string]int64 {
	staging := plan.RestoreStaging(s.Cluster.Spec.Etcd.DataDir)
	q := shell.Quote
	script := fmt.Sprintf(`d=%s; while [ ! -d "$d" ]; do d=$(dirname "$d"); done
df -Pk "$d" | awk 'NR==2 {print "free", $4}'
if [ -d %[2]s ]; then du -sk %[2]s | awk '{print "staged", $1}'; fi`, q(filepath.Dir(staging)), q(staging))
	room := map[string]int64{}
	var mu sync.Mutex
	_ = hosts.ForEach(ctx, s.Cluster.Spec.Hosts, s.opts.Concurrency, func(ctx context.Context, h config.Host) error {
		t := s.Hosts.T[h.Name]
		if t == nil {
			return nil
		}
		b, err := t.Run(ctx, script, nil)
		if err != nil {
			s.Log.Logger().Debug("could not read the room for the restored data", "host", h.Name, "err", err)
			return nil
		}
		var kb int64
		free := false
		for _, line := range strings.Split(string(b), "\n") {
			tag, v, _ := strings.Cut(strings.TrimSpace(line), " ")
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || (tag != "free" && tag != "staged") {
				continue
			}
			kb += n
			free = free || tag == "free"
		}
		if free {
			mu.Lock()
			room[h.Name] = kb << 10
			mu.Unlock()
		}
		return nil
	})
	return room
}
