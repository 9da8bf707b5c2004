package ops

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/snapshot"
)

// KindSnapshot saves a snapshot of the cluster on this machine.
const KindSnapshot Kind = "snapshot"

// Snapshot saves a snapshot of the cluster, from its leader, to Path on
// this machine.
type Snapshot struct {
	Path string `json:"path"`
	Why  string `json:"why,omitempty"`
}

func (Snapshot) Kind() Kind       { return KindSnapshot }
func (o Snapshot) Meta() Meta     { return Meta{Why: o.Why} }
func (o Snapshot) String() string { return fmt.Sprintf("save a snapshot to %s", o.Path) }

func snapshotOp(ctx context.Context, e Env, o Snapshot) error {
	c, cli, log := e.Cluster(), e.Etcd(), e.Log()
	src, err := SnapshotSource(ctx, c, cli, "", 3*time.Second)
	if err != nil {
		return err
	}
	log.Printf("saving a snapshot from %s to %s", src.Name, o.Path)
	start := time.Now()
	info, err := SaveSnapshot(ctx, c, cli, src, o.Path)
	if err != nil {
		return err
	}
	log.Printf("snapshot saved: %s (revision %d, %d bytes, sha256 %s, from %s, in %s)", info.Path, info.Revision, info.Size, info.SHA256, src.Name, time.Since(start).Round(time.Millisecond))
	e.Report(Done{Snapshot: info.Path})
	return nil
}

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
// (see snapshot.Save) and records where it came from. Into etcdadm's
// snapshots directory, that directory is made private first.
func SaveSnapshot(ctx context.Context, c *config.Cluster, cli *etcdclient.Client, src etcdclient.MemberStatus, dst string) (*snapshot.Info, error) {
	if abs, err := filepath.Abs(dst); err == nil && filepath.Dir(abs) == snapshot.Dir(c) {
		if err := snapshot.PrivateDir(snapshot.Dir(c)); err != nil {
			return nil, err
		}
	}
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
