// Package snapshot saves etcd snapshots to the operator's machine, checks
// them, and makes the data directories a cluster is restored from. It needs
// no etcdutl anywhere: the restore is etcd's own Go code, run here.
// It is a leaf: it imports nothing that plans, reaches a host or runs.
package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"

	"github.com/etcdadm-io/etcdadm/internal/atomicfile"
)

// trailerSize is the sha256 etcd appends to the database it streams.
const trailerSize = sha256.Size

// Info describes a checked snapshot file.
type Info struct {
	Path string `json:"path"`
	// Size is the file's size, sha256 trailer included.
	Size int64 `json:"size"`
	// SHA256 is the digest of the database, as the trailer carries it.
	SHA256 string `json:"sha256"`
	// Revision, Keys and Hash are what the database holds, as `etcdutl
	// snapshot status` prints them (Hash is its CRC-32C over the buckets).
	Revision int64  `json:"revision"`
	Keys     int    `json:"keys"`
	Hash     uint32 `json:"hash"`
	// StorageVersion is the etcd storage version the database was made by.
	StorageVersion string `json:"storageVersion,omitempty"`
	// Read says how a saved snapshot's database came: ReadStream or
	// ReadHeldFile.
	Read string `json:"read,omitempty"`
}

// Meta is what etcdadm records next to a snapshot it saved, in FILE.json:
// where the snapshot comes from, so that a restore can tell another
// cluster's.
type Meta struct {
	Cluster       string    `json:"cluster"`
	Member        string    `json:"member"`
	MemberID      string    `json:"memberID,omitempty"`
	Endpoint      string    `json:"endpoint"`
	ServerVersion string    `json:"serverVersion,omitempty"`
	TakenAt       time.Time `json:"takenAt"`
	Info
}

// How a snapshot's database was read.
const (
	// ReadStream: etcd's snapshot stream, over mutual TLS.
	ReadStream = "stream"
	// ReadHeldFile: the member's database file, read through its host's
	// SSH connection while the member held the snapshot open; the head
	// (the meta pages) as the member sent it.
	ReadHeldFile = "held-file"
)

// MetaPath is where the metadata of the snapshot at p is kept.
func MetaPath(p string) string { return p + ".json" }

// ReadMeta reads the metadata saved next to p; nil, nil when there is none.
func ReadMeta(p string) (*Meta, error) {
	b, err := os.ReadFile(MetaPath(p))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", MetaPath(p), err)
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("read %s: %w", MetaPath(p), err)
	}
	return &m, nil
}

// DefaultName is a snapshot's file name: the cluster and the UTC time.
func DefaultName(cluster string, now time.Time) string {
	return fmt.Sprintf("%s-%s.db", cluster, now.UTC().Format("20060102T150405Z"))
}

// trailerHash hashes everything written to it but the last 32 bytes, which
// it keeps: a stream's sha256 trailer is checked without a second read.
type trailerHash struct {
	h    hash.Hash
	tail []byte
	n    int64
	// db, when set, receives the database's bytes as they are hashed.
	db io.Writer
}

func newTrailerHash() *trailerHash { return &trailerHash{h: sha256.New()} }

func (t *trailerHash) Write(p []byte) (int, error) {
	t.n += int64(len(p))
	if len(p) >= trailerSize {
		// What was held back and all of p but its last 32 bytes are the
		// database's: hashed in place, with no copy of p.
		t.hash(t.tail)
		t.hash(p[:len(p)-trailerSize])
		t.tail = append(t.tail[:0], p[len(p)-trailerSize:]...)
		return len(p), nil
	}
	t.tail = append(t.tail, p...)
	if cut := len(t.tail) - trailerSize; cut > 0 {
		t.hash(t.tail[:cut])
		t.tail = append(t.tail[:0], t.tail[cut:]...)
	}
	return len(p), nil
}

func (t *trailerHash) hash(b []byte) {
	if len(b) == 0 {
		return
	}
	t.h.Write(b)
	if t.db != nil {
		t.db.Write(b)
	}
}

// check says whether the stream ended with the sha256 of what came before.
func (t *trailerHash) check() (string, error) {
	if t.n < trailerSize || t.n%512 != trailerSize {
		return "", fmt.Errorf("%d bytes is not an etcd snapshot with its sha256 trailer (the size of one is a multiple of 512, plus 32): the file is truncated or not a snapshot", t.n)
	}
	sum := t.h.Sum(nil)
	if !bytes.Equal(sum, t.tail) {
		return "", fmt.Errorf("sha256 mismatch: the trailer says %x, the database hashes to %x: the file is corrupted", t.tail, sum)
	}
	return hex.EncodeToString(sum), nil
}

// Verify checks a snapshot file: its sha256 trailer against its bytes, then
// its database's structure (bbolt's own check), and reads its revision.
func Verify(p string) (*Info, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("open snapshot: %w", err)
	}
	defer f.Close()
	th := newTrailerHash()
	if _, err := io.Copy(th, f); err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	sum, err := th.check()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	info, err := status(p)
	if err != nil {
		return nil, err
	}
	info.Size, info.SHA256 = th.n, sum
	return info, nil
}

// Stream is a snapshot as a member sends it.
type Stream struct {
	io.ReadCloser
	// ServerVersion is the sending member's storage version.
	ServerVersion string
	// Body says that the stream is the database alone, read from the
	// member's file while the member held the snapshot open: the sha256
	// trailer etcd would append is computed here and appended, so that
	// the file is the one etcd would have streamed.
	Body bool
	// Size, when known, is the size of the database alone: the file's
	// disk space is allocated before its bytes come.
	Size int64
	// Confirm, when set, says whether the bytes read are the snapshot's:
	// it is called once they are all in, while the file is checked, and
	// the file is kept only if it returns nil.
	Confirm func() error
}

// Save writes the stream to dst, atomically and with mode 0600: into a
// temporary file next to it, checked (sha256 trailer, database structure),
// synced, then renamed; the metadata goes to dst.json the same way. On any
// error no file is left behind.
func Save(ctx context.Context, s Stream, dst string, meta Meta) (*Info, error) {
	defer s.Close()
	if _, err := os.Lstat(dst); err == nil {
		return nil, fmt.Errorf("%s exists: choose another name with -o", dst)
	}
	th := newTrailerHash()
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	var info *Info
	receive := func(w io.Writer) error {
		var n int64
		var err error
		if s.Body {
			n, err = copyAhead(s, w, th.h)
		} else {
			n, err = io.Copy(io.MultiWriter(w, th), s)
		}
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return fmt.Errorf("receive the snapshot after %d bytes: %w", n, err)
		}
		if s.Body {
			// The trailer follows the database, and th holds it as it
			// would have held a member's.
			th.tail = th.h.Sum(nil)
			th.n = n + trailerSize
			if _, err := w.Write(th.tail); err != nil {
				return fmt.Errorf("write the snapshot's sha256: %w", err)
			}
		}
		return nil
	}
	check := func(tmp string) error {
		sum, err := th.check()
		if err != nil {
			return fmt.Errorf("the snapshot received: %w", err)
		}
		if info, err = status(tmp); err != nil {
			return err
		}
		if s.Confirm != nil {
			if err := s.Confirm(); err != nil {
				return err
			}
		}
		info.Path, info.Size, info.SHA256 = dst, th.n, sum
		return nil
	}
	size := s.Size
	if size > 0 {
		size += trailerSize
	}
	if err := atomicfile.WriteFromSized(dst, size, 0o600, 0o700, receive, check); err != nil {
		return nil, err
	}
	info.Read = meta.Read
	meta.Info = *info
	if meta.ServerVersion == "" {
		meta.ServerVersion = s.ServerVersion
	}
	mb, err := json.MarshalIndent(meta, "", "  ")
	if err == nil {
		err = atomicfile.Write(MetaPath(dst), append(mb, '\n'), 0o600, 0o700)
	}
	if err != nil {
		os.Remove(dst)
		return nil, err
	}
	return info, nil
}

// RestoreMember is one member of the restored cluster.
type RestoreMember struct {
	Name    string `json:"name"`
	PeerURL string `json:"peerURL"`
}

// RevisionBump is how far a restore moves the revision forward, as etcd's
// guide asks for Kubernetes: informers and watches see a compaction and
// start over instead of missing the writes after the snapshot.
const RevisionBump = 1_000_000_000

// Prepare makes, under out/<member>, each member's data directory from the
// snapshot: the same database, that member's name and peer URL, the whole
// --initial-cluster and a new cluster token, the revision bumped and marked
// compacted. Each directory holds member/ as etcd's data directory does.
// With only, just those members' directories are made, for the same
// cluster.
func Prepare(snapshotPath, out string, members []RestoreMember, token string, only ...string) error {
	var ic []string
	for _, m := range members {
		ic = append(ic, m.Name+"="+m.PeerURL)
	}
	for _, m := range members {
		if len(only) > 0 && !slices.Contains(only, m.Name) {
			continue
		}
		dir := filepath.Join(out, m.Name)
		err := etcdutl.NewV3(zap.NewNop()).Restore(etcdutl.RestoreConfig{
			SnapshotPath:        snapshotPath,
			Name:                m.Name,
			OutputDataDir:       dir,
			PeerURLs:            []string{m.PeerURL},
			InitialCluster:      strings.Join(ic, ","),
			InitialClusterToken: token,
			RevisionBump:        RevisionBump,
			MarkCompacted:       true,
		})
		if err != nil {
			return fmt.Errorf("make %s's data directory from %s: %w", m.Name, snapshotPath, err)
		}
	}
	return nil
}
