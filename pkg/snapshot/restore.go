package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/etcdserver/api/membership"
	"go.uber.org/zap"

	"github.com/etcdadm-io/etcdadm/internal/atomicfile"
)

// Identity is the cluster ID and the member IDs, by name, that a restore
// of members with token gives: etcd derives them from the peer URLs and
// the token alone, so a host whose data directory holds them has been
// restored already.
func Identity(members []RestoreMember, token string) (cluster uint64, ids map[string]uint64, err error) {
	var ic []string
	for _, m := range members {
		ic = append(ic, m.Name+"="+m.PeerURL)
	}
	urls, err := types.NewURLsMap(strings.Join(ic, ","))
	if err != nil {
		return 0, nil, fmt.Errorf("the restored cluster's members: %w", err)
	}
	rc, err := membership.NewClusterFromURLsMap(zap.NewNop(), token, urls)
	if err != nil {
		return 0, nil, fmt.Errorf("the restored cluster's members: %w", err)
	}
	ids = map[string]uint64{}
	for _, m := range rc.Members() {
		ids[m.Name] = uint64(m.ID)
	}
	return uint64(rc.ID()), ids, nil
}

// walSegment is the size etcd preallocates for its write-ahead log.
const walSegment = 64 * 1000 * 1000

// DataDirSize is, with room to spare, what one member's data directory
// made from a snapshot of size bytes takes on disk: the database, a tenth
// more for what the restore writes into it, and the write-ahead log etcd
// preallocates.
func DataDirSize(size int64) int64 { return size + size/10 + walSegment + 1<<20 }

// Record is what this machine keeps of a restore until it is done or
// aborted, in etcdadm's snapshots directory: the snapshot, the cluster
// token its data directories are made with, and where they are made here.
// The hosts keep their own record (a marker naming the sha256 and the
// token), which the facts read.
type Record struct {
	Cluster string    `json:"cluster"`
	File    string    `json:"file"`
	SHA256  string    `json:"sha256"`
	Token   string    `json:"token"`
	Started time.Time `json:"started"`
	// TempDir holds the data directories made here; a run cut by a second
	// Ctrl-C leaves it, and the next restore or abort removes it.
	TempDir string `json:"tempDir,omitempty"`
}

// RecordName is the record's file in the snapshots directory.
const RecordName = "restore-in-progress.json"

// ReadRecord reads the record in dir; nil, nil when there is none.
func ReadRecord(dir string) (*Record, error) {
	p := filepath.Join(dir, RecordName)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the restore's record: %w", err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read the restore's record %s: %w", p, err)
	}
	return &r, nil
}

// Save writes the record into dir, made private first, 0600 and atomically.
func (r *Record) Save(dir string) error {
	if err := PrivateDir(dir); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, RecordName), append(b, '\n'), 0o600, DirMode); err != nil {
		return fmt.Errorf("record the restore: %w", err)
	}
	return nil
}

// RemoveRecord removes the record in dir, and the directory it names for
// the data made here.
func RemoveRecord(dir string, r *Record) error {
	if r != nil && r.TempDir != "" {
		if err := os.RemoveAll(r.TempDir); err != nil {
			return fmt.Errorf("remove the restore's data made here: %w", err)
		}
	}
	if err := os.Remove(filepath.Join(dir, RecordName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the restore's record: %w", err)
	}
	return nil
}
