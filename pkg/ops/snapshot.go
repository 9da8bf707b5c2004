package ops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
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
	info, err := SaveSnapshot(ctx, c, cli, src, o.Path, SaveOptions{Host: e.TransportOf(src.Name), Log: log})
	if err != nil {
		return err
	}
	log.Printf("snapshot saved: %s (revision %d, %d bytes, sha256 %s, from %s, read as %s, in %s)", info.Path, info.Revision, info.Size, info.SHA256, src.Name, info.Read, time.Since(start).Round(time.Millisecond))
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

// SaveOptions says how SaveSnapshot reads the member's database.
type SaveOptions struct {
	// Host reaches the source member's host. When set, a database of more
	// than a few megabytes is read from the member's file through it while
	// the member holds the snapshot open (etcdclient.HeldSnapshot): at the
	// SSH connection's speed, where etcd's own stream is about half of it.
	// Else, or when the file cannot be read so, etcd streams it.
	Host remote.Transport
	// Log says why a snapshot that could have been read from the file
	// was streamed; nil for none.
	Log *progress.Log
}

// SaveSnapshot saves a snapshot of the member to dst on this machine (see
// snapshot.Save) and records where it came from. Into etcdadm's snapshots
// directory, that directory is made private first.
func SaveSnapshot(ctx context.Context, c *config.Cluster, cli *etcdclient.Client, src etcdclient.MemberStatus, dst string, o SaveOptions) (*snapshot.Info, error) {
	if abs, err := filepath.Abs(dst); err == nil && filepath.Dir(abs) == snapshot.Dir(c) {
		if err := snapshot.PrivateDir(snapshot.Dir(c)); err != nil {
			return nil, err
		}
	}
	meta := snapshot.Meta{Cluster: c.Metadata.Name, Member: src.Name, MemberID: src.ID, Endpoint: src.Endpoint,
		ServerVersion: src.Version, TakenAt: time.Now().UTC()}
	if o.Host != nil {
		info, err := saveHeld(ctx, c, cli, o.Host, src, dst, meta)
		switch {
		case err == nil:
			return info, nil
		case ctx.Err() != nil:
			return nil, fmt.Errorf("snapshot from %s: %w", src.Name, ctx.Err())
		case errors.Is(err, etcdclient.ErrSnapshotTooSmall):
		case o.Log != nil:
			o.Log.Printf("warning: %s's database file could not be read under its held snapshot (%v): streaming the snapshot instead", src.Name, err)
		}
	}
	rc, version, err := cli.Snapshot(ctx, src.Endpoint)
	if err != nil {
		return nil, err
	}
	meta.Read = snapshot.ReadStream
	info, err := snapshot.Save(ctx, snapshot.Stream{ReadCloser: rc, ServerVersion: version}, dst, meta)
	if err != nil {
		return nil, fmt.Errorf("snapshot from %s: %w", src.Name, err)
	}
	return info, nil
}

// saveHeld saves the snapshot the member holds open, its head as the
// member sent it and the rest read from its database file through t; the
// file is kept only if the member held the snapshot until the last byte
// was read, and it checks out.
func saveHeld(ctx context.Context, c *config.Cluster, cli *etcdclient.Client, t remote.Transport, src etcdclient.MemberStatus, dst string, meta snapshot.Meta) (*snapshot.Info, error) {
	held, err := cli.HoldSnapshot(ctx, src.Endpoint)
	if err != nil {
		return nil, err
	}
	defer held.Close()
	db := path.Join(c.Spec.Etcd.DataDir, "member", "snap", "db")
	// One process reads the file from its start, as a plain read does:
	// its first bytes, which the head replaces, are dropped here.
	p, err := t.Start(ctx, fmt.Sprintf("head -c %d %s", held.Size, shell.Quote(db)))
	if err != nil {
		return nil, err
	}
	rest := &skipReader{r: p.Stdout, skip: int64(len(held.Head))}
	// The member's confirmation that it held the snapshot is received
	// while the file is written out and checked.
	confirmed := make(chan error, 1)
	body := &heldBody{r: io.MultiReader(bytes.NewReader(held.Head), rest), p: p, file: db, finish: func(n int64) error {
		if n != held.Size {
			return fmt.Errorf("read %d bytes of %s where the member's snapshot has %d", n, db, held.Size)
		}
		go func() { confirmed <- held.Confirm() }()
		return nil
	}}
	meta.Read = snapshot.ReadHeldFile
	return snapshot.Save(ctx, snapshot.Stream{ReadCloser: body, ServerVersion: held.Version, Body: true, Size: held.Size,
		Confirm: func() error { return <-confirmed }}, dst, meta)
}

// skipReader drops the first skip bytes of r.
type skipReader struct {
	r    io.Reader
	skip int64
}

func (s *skipReader) Read(p []byte) (int, error) {
	if s.skip > 0 {
		if _, err := io.CopyN(io.Discard, s.r, s.skip); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		s.skip = 0
	}
	return s.r.Read(p)
}

// heldBody is a held snapshot's bytes, the rest read from file by p: at
// their end, p must have succeeded and finish say that they are whole, or
// an error takes the place of io.EOF; a read that fails says why p did.
type heldBody struct {
	r      io.Reader
	n      int64
	p      *remote.Process
	file   string
	finish func(n int64) error
	// finished says that finish was called, at the first io.EOF.
	finished bool
}

func (b *heldBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	if err == nil {
		return n, nil
	}
	if werr := b.p.Wait(); werr != nil {
		return n, fmt.Errorf("read %s: %w", b.file, werr)
	}
	if err == io.EOF && !b.finished {
		b.finished = true
		if ferr := b.finish(b.n); ferr != nil {
			return n, ferr
		}
	}
	return n, err
}

func (b *heldBody) Close() error {
	_ = b.p.Close()
	return nil
}
