package apply

import (
	"context"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
	"github.com/etcdadm-io/etcdadm/pkg/snapshot"
)

// SnapshotSource picks the member a snapshot streams from: the named one,
// or the leader; it must be healthy.
func SnapshotSource(ctx context.Context, c *config.Cluster, cli *etcdclient.Client, member string, timeout time.Duration) (etcdclient.MemberStatus, error) {
	sts := cli.Status(ctx, Endpoints(c), timeout)
	for _, st := range sts {
		switch {
		case member != "" && st.Name == member && st.Healthy:
			return st, nil
		case member != "" && st.Name == member:
			return st, fmt.Errorf("member %s is not healthy (%s): choose another with --member", member, st.Error)
		case member == "" && st.Leader && st.Healthy:
			return st, nil
		}
	}
	if member != "" {
		return etcdclient.MemberStatus{}, fmt.Errorf("--member %s: no such host in the inventory", member)
	}
	return etcdclient.MemberStatus{}, fmt.Errorf("no healthy leader to take a snapshot from (%v): name a healthy member with --member", etcdclient.Unhealthy(sts))
}

// SaveSnapshot streams a snapshot from the member to dst on this machine
// (see snapshot.Save) and records where it came from.
func SaveSnapshot(ctx context.Context, c *config.Cluster, cli *etcdclient.Client, src etcdclient.MemberStatus, dst string) (*snapshot.Info, error) {
	rc, version, err := cli.Snapshot(ctx, src.Endpoint)
	if err != nil {
		return nil, err
	}
	meta := snapshot.Meta{Cluster: c.Metadata.Name, Member: src.Name, MemberID: src.ID, Endpoint: src.Endpoint,
		ServerVersion: src.Version, TakenAt: time.Now().UTC()}
	info, err := snapshot.Save(ctx, snapshot.Stream{ReadCloser: rc, ServerVersion: version}, dst, meta)
	if err != nil {
		return nil, fmt.Errorf("snapshot from %s: %w", src.Name, err)
	}
	return info, nil
}

// snapshot runs a plan's snapshot operation.
func (x *Executor) snapshot(ctx context.Context, op plan.Op) error {
	src, err := SnapshotSource(ctx, x.Cluster, x.Etcd, "", 3*time.Second)
	if err != nil {
		return err
	}
	x.Log.Printf("saving a snapshot from %s to %s", src.Name, op.Path)
	start := time.Now()
	info, err := SaveSnapshot(ctx, x.Cluster, x.Etcd, src, op.Path)
	if err != nil {
		return err
	}
	x.Log.Printf("snapshot saved: %s (revision %d, %d bytes, sha256 %s, from %s, in %s)", info.Path, info.Revision, info.Size, info.SHA256, src.Name, time.Since(start).Round(time.Millisecond))
	x.mu.Lock()
	x.snapshots = append(x.snapshots, info.Path)
	x.mu.Unlock()
	return nil
}

// pushData streams a data directory made here into op.Path on the host:
// whatever was there is removed first, the files land 0600 in 0700
// directories.
func (x *Executor) pushData(ctx context.Context, t remote.Transport, name string, op plan.Op) error {
	q := shell.Quote
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(snapshot.Archive(pw, op.Source)) }()
	script := fmt.Sprintf(`set -e; umask 077; dst=%s
rm -rf "$dst"; mkdir -p "$dst"; chmod 0700 "$dst"
tar -C "$dst" --no-same-owner -xzf -
echo pushed`, q(op.Path))
	start := time.Now()
	out, err := t.Run(ctx, script, pr)
	pr.CloseWithError(io.ErrClosedPipe)
	if err != nil {
		return fmt.Errorf("push the restored data to %s: %w", op.Path, err)
	}
	if !strings.Contains(string(out), "pushed") {
		return fmt.Errorf("push the restored data to %s: the host did not confirm it", op.Path)
	}
	x.Log.Host(name, "pushed the restored data to %s in %s", op.Path, time.Since(start).Round(time.Millisecond))
	return nil
}

// swapData moves the data directory's contents under this run's backup
// directory and the pushed data in their place; the data directory itself
// stays (it may be a mount point).
func (x *Executor) swapData(ctx context.Context, t remote.Transport, name string, op plan.Op) error {
	q := shell.Quote
	bk := path.Join(x.BackupDir, x.stamp, op.Path)
	script := fmt.Sprintf(`set -e; umask 077; dd=%s; src=%s; bk=%s
[ -d "$src/member" ] || { echo "no pushed data in $src" >&2; exit 1; }
mkdir -p "$dd" "$bk"; chmod 0700 "$dd"
find "$dd" -mindepth 1 -maxdepth 1 -exec mv -t "$bk" {} +
mv "$src/member" "$dd/member"; rmdir "$src"`, q(op.Path), q(op.Source), q(bk))
	if _, err := t.Run(ctx, script, nil); err != nil {
		return fmt.Errorf("swap %s for the restored data: %w", op.Path, err)
	}
	x.Log.Host(name, "moved the old data of %s to %s; the restored data is in place", op.Path, bk)
	x.record(name, func(r *HostResult) { r.Ran = append(r.Ran, "backup "+op.Path) })
	return nil
}

// DefaultKeepBackups is how many runs' backups a host keeps.
const DefaultKeepBackups = 5

// pruneBackups keeps the newest keep run directories under the backup
// directory of every host this run changed, removing the older ones.
func (x *Executor) pruneBackups(ctx context.Context) {
	if x.KeepBackups <= 0 {
		return
	}
	q := shell.Quote
	script := fmt.Sprintf(`d=%s; [ -d "$d" ] || exit 0
ls -1 "$d" | grep -E '^[0-9]{8}T[0-9]{6}Z$' | sort -r | awk -v n=%d 'NR>n' | while read -r x; do rm -rf -- "$d/$x" && echo "$x"; done`, q(x.BackupDir), x.KeepBackups)
	for _, h := range x.Cluster.AllHosts() {
		if _, ok := x.res[h.Name]; !ok {
			continue
		}
		t := x.Hosts.T[h.Name]
		if t == nil {
			continue
		}
		out, err := t.Run(ctx, script, nil)
		if err != nil {
			x.Log.Warn(h.Name, "could not prune old backups in %s: %v", x.BackupDir, err)
			continue
		}
		if gone := strings.Fields(string(out)); len(gone) > 0 {
			x.Log.Host(h.Name, "removed %d old backup(s) from %s, keeping the newest %d: %s", len(gone), x.BackupDir, x.KeepBackups, strings.Join(gone, " "))
		}
	}
}
