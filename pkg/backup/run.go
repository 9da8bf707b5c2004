package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"filippo.io/age"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdadm-io/etcdadm/pkg/calendar"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
)

// RunOptions tune a run.
type RunOptions struct {
	// Now takes a backup whatever the period's: one on demand.
	Now bool
	Log *progress.Log
}

// Result is what a run did.
type Result struct {
	// Skipped says why this member took no backup.
	Skipped  string
	Manifest *Manifest
	// Pruned are the keys deleted after the backup.
	Pruned []string
}

// Run is `etcdadm backup run` on a member host: one backup per period of
// the schedule across the cluster, taken by the member whose turn it is,
// then the bucket pruned to cfg.Keep; the textfile records the run,
// success or failure.
func Run(ctx context.Context, cfg *HostConfig, o RunOptions) (*Result, error) {
	if o.Log == nil {
		o.Log = progress.NewLog(nil)
	}
	tf := ReadTextfile(cfg.Textfile, cfg.Cluster)
	res, err := run(ctx, cfg, o, tf)
	end := time.Now()
	switch {
	case err != nil:
		tf.Failure(end)
	case res.Skipped != "":
		tf.Skipped(end)
	}
	if werr := tf.Write(cfg.Textfile); werr != nil {
		o.Log.Warn(cfg.Member, "%v", werr)
	}
	return res, err
}

// Clients are what a run reaches: the local member and the bucket.
func (h *HostConfig) Clients() (*clientv3.Client, *Store, []age.Recipient, error) {
	ca, err := os.ReadFile(h.TLS.CA)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read the etcd CA: %w", err)
	}
	cert, err := os.ReadFile(h.TLS.Cert)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read the healthcheck-client certificate: %w", err)
	}
	key, err := os.ReadFile(h.TLS.Key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read the healthcheck-client key: %w", err)
	}
	tlsConfig, err := etcdclient.TLSConfig(ca, cert, key)
	if err != nil {
		return nil, nil, nil, err
	}
	credsFile, err := os.Open(h.S3.CredentialsFile)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read the S3 credentials: %w", err)
	}
	creds, err := config.ParseCredentials(credsFile)
	credsFile.Close()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", h.S3.CredentialsFile, err)
	}
	var s3CA []byte
	if h.S3.CAFile != "" {
		if s3CA, err = os.ReadFile(h.S3.CAFile); err != nil {
			return nil, nil, nil, fmt.Errorf("read the S3 CA: %w", err)
		}
	}
	store, err := NewStore(h.S3, creds, s3CA)
	if err != nil {
		return nil, nil, nil, err
	}
	b := &config.Backup{Encryption: h.Encryption}
	recipients, err := b.AgeRecipients()
	if err != nil {
		return nil, nil, nil, err
	}
	if len(recipients) == 0 && !h.Encryption.None {
		return nil, nil, nil, fmt.Errorf("%s names no age recipient and does not say encryption none", ConfigPath)
	}
	cli, err := etcdclient.New(tlsConfig, nil).Connect(h.Endpoint)
	if err != nil {
		return nil, nil, nil, err
	}
	return cli, store, recipients, nil
}

func run(ctx context.Context, cfg *HostConfig, o RunOptions, tf *Textfile) (*Result, error) {
	log := o.Log
	sched, err := calendar.Parse(cfg.Schedule, time.Local)
	if err != nil {
		return nil, fmt.Errorf("%s: schedule: %w", ConfigPath, err)
	}
	cli, store, recipients, err := cfg.Clients()
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	st, err := cli.Status(sctx, cfg.Endpoint)
	cancel()
	switch {
	case err != nil:
		return nil, fmt.Errorf("member %s (%s) does not answer: %w", cfg.Member, cfg.Endpoint, err)
	case st.IsLearner:
		return &Result{Skipped: "member " + cfg.Member + " is a learner: the voting members take the backups"}, nil
	case st.Leader == 0:
		return nil, fmt.Errorf("member %s has no leader: no backup without a quorum", cfg.Member)
	}
	now := time.Now()
	var period time.Time
	if !o.Now {
		p, ok := sched.Prev(now)
		if !ok {
			return nil, fmt.Errorf("schedule %q never elapsed before %s", cfg.Schedule, now.Format(time.RFC3339))
		}
		period = p
	}
	turn, skip, err := Elect(ctx, cli, cfg.Cluster, cfg.Member, period, o.Now, func(holder Claim) {
		log.Host(cfg.Member, "member %s is taking the backup (since %s): waiting for it", holder.Member, holder.Started.Format(time.RFC3339))
	})
	if err != nil {
		return nil, err
	}
	if skip != "" {
		log.Host(cfg.Member, "%s", skip)
		return &Result{Skipped: skip}, nil
	}
	m, err := take(ctx, cli, store, cfg, st, recipients, turn, period, log)
	if err != nil {
		turn.Release()
		return nil, err
	}
	last := Last{Period: period, Member: cfg.Member, Object: m.Object, Revision: m.Revision, At: m.TakenAt}
	if err := turn.Done(ctx, last); err != nil {
		return nil, err
	}
	res := &Result{Manifest: m}
	tf.Success(time.Now(), time.Duration(m.Seconds*float64(time.Second)), m.ObjectSize, m.Revision)
	res.Pruned, err = Prune(ctx, store, cfg.Cluster, cfg.Keep, log)
	if err != nil {
		return res, fmt.Errorf("the backup %s is taken, but pruning failed: %w", store.URL(m.Object), err)
	}
	return res, nil
}

// take streams a snapshot of the local member to the bucket, made visible
// only while the turn is this member's.
func take(ctx context.Context, cli *clientv3.Client, store *Store, cfg *HostConfig, st *clientv3.StatusResponse, recipients []age.Recipient, turn *Turn, period time.Time, log *progress.Log) (*Manifest, error) {
	log.Host(cfg.Member, "streaming a snapshot of %s to %s", cfg.Endpoint, store.URL(store.ClusterDir(cfg.Cluster)))
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	snap, err := cli.SnapshotWithVersion(sctx)
	if err != nil {
		return nil, fmt.Errorf("snapshot of %s: %w", cfg.Endpoint, err)
	}
	defer snap.Snapshot.Close()
	src := Source{Stream: snap.Snapshot, Cluster: cfg.Cluster, Member: cfg.Member, MemberID: etcdclient.FormatID(st.Header.MemberId),
		EtcdVersion: st.Version, StorageVersion: snap.Version, Period: period}
	m, err := Save(ctx, store, "", src, recipients, cfg.Encryption.Recipients, turn.Holds)
	if err != nil {
		return nil, err
	}
	log.Host(cfg.Member, "backup taken: %s (revision %d, %d keys, %d bytes, sha256 %s, in %.1fs)", store.URL(m.Object), m.Revision, m.Keys, m.ObjectSize, m.SHA256, m.Seconds)
	return m, nil
}

// Source is a snapshot as a member streams it, and where it comes from.
type Source struct {
	Stream                                                 io.Reader
	Cluster, Member, MemberID, EtcdVersion, StorageVersion string
	// Period is the schedule's period it is taken for; zero for none.
	Period time.Time
}

// Save streams the snapshot src to the bucket, encrypted for recipients
// (named as in the inventory: names), with its manifest: to key, or, when
// key is empty, under the cluster's directory by its time and revision
// (uploaded under a temporary name until the revision is known at the
// stream's end, then copied in the bucket). before, when given, is asked
// right before the backup is made visible.
func Save(ctx context.Context, store *Store, key string, src Source, recipients []age.Recipient, names []string, before func(context.Context) error) (*Manifest, error) {
	start := time.Now().UTC()
	upload := key
	if key == "" {
		upload = store.ClusterDir(src.Cluster) + incompleteDir + start.Format("20060102T150405Z") + "-" + src.Member
	}
	info, size, err := Upload(ctx, store, upload, src.Stream, recipients)
	if err != nil {
		return nil, err
	}
	if key == "" {
		key = store.ObjectKey(src.Cluster, start, info.Revision, len(recipients) > 0)
	}
	m := &Manifest{Cluster: src.Cluster, Object: key, TakenAt: start, Period: src.Period, Revision: info.Revision, Keys: info.Keys,
		Size: info.Size, SHA256: info.SHA256, ObjectSize: size, Member: src.Member, MemberID: src.MemberID,
		EtcdVersion: src.EtcdVersion, StorageVersion: src.StorageVersion, Recipients: names}
	cleanup := context.WithoutCancel(ctx)
	if before != nil {
		err = before(ctx)
	}
	if upload != key {
		if err == nil {
			err = store.Copy(ctx, key, upload)
		}
		if rerr := store.Remove(cleanup, upload); rerr != nil && err == nil {
			err = rerr
		}
	}
	if err == nil {
		m.Seconds = time.Since(start).Seconds()
		mb, _ := json.MarshalIndent(m, "", "  ")
		err = store.PutSmall(ctx, ManifestKey(key), append(mb, '\n'), typeManifest)
	}
	if err != nil {
		_ = store.Remove(cleanup, key)
		return nil, err
	}
	return m, nil
}

// Prune deletes what Prunable lists.
func Prune(ctx context.Context, store *Store, cluster string, keep int, log *progress.Log) ([]string, error) {
	backups, incomplete, err := Catalog(ctx, store, cluster)
	if err != nil {
		return nil, err
	}
	var done []string
	var errs []error
	for _, k := range Prunable(backups, incomplete, keep, time.Now()) {
		if err := store.Remove(ctx, k); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, k)
		log.Printf("pruned %s", store.URL(k))
	}
	return done, errors.Join(errs...)
}
