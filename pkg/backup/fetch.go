package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"

	"github.com/etcdadm-io/etcdadm/internal/atomicfile"
	"github.com/etcdadm-io/etcdadm/pkg/snapshot"
)

// ReadManifest reads the manifest of the backup at key (its object's key,
// or the manifest's own).
func ReadManifest(ctx context.Context, s *Store, key string) (*Manifest, error) {
	key = strings.TrimSuffix(key, ".json")
	data, err := s.ReadSmall(ctx, ManifestKey(key), maxManifest)
	if err != nil {
		return nil, fmt.Errorf("%s has no manifest etcdadm wrote: %w", s.URL(key), err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("the manifest of %s: %w", s.URL(key), err)
	}
	if m.Object != key {
		return nil, fmt.Errorf("the manifest of %s describes %s", s.URL(key), m.Object)
	}
	return &m, nil
}

// Fetch downloads the backup at key into dst (mode 0600, written
// atomically), decrypting it with identities when it is encrypted, and
// checks it against its manifest as it arrives: the sha256 trailer, the
// size, the revision and the keys. dst.json records where it comes from,
// as `snapshot save` does, for a restore's checks.
func Fetch(ctx context.Context, s *Store, key string, identities []age.Identity, dst string) (*Manifest, *snapshot.Info, error) {
	m, err := ReadManifest(ctx, s, key)
	if err != nil {
		return nil, nil, err
	}
	if m.Encrypted() && len(identities) == 0 {
		return m, nil, fmt.Errorf("%s is encrypted for %s: give the identity (the age key) with --identity", s.URL(m.Object), strings.Join(m.Recipients, ", "))
	}
	rc, size, err := s.Get(ctx, m.Object)
	if err != nil {
		return m, nil, err
	}
	defer rc.Close()
	if size != m.ObjectSize {
		return m, nil, fmt.Errorf("%s has %d bytes, its manifest says %d", s.URL(m.Object), size, m.ObjectSize)
	}
	var info *snapshot.Info
	write := func(w io.Writer) error {
		var src io.Reader = rc
		if m.Encrypted() {
			d, err := age.Decrypt(rc, identities...)
			if err != nil {
				return fmt.Errorf("decrypt %s: %w", s.URL(m.Object), err)
			}
			src = d
		}
		info, err = Encode(w, src, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", s.URL(m.Object), err)
		}
		return nil
	}
	check := func(string) error {
		return Compare(s.URL(m.Object), m, info.Revision, int64(info.Keys), "its snapshot holds", info)
	}
	// The snapshot's size reserves the disk first, so that a disk without
	// room fails before the download starts; never more than the object
	// holds, whatever its manifest says (age only adds to a snapshot).
	if err := atomicfile.WriteFromSized(dst, min(m.Size, size), 0o600, 0o700, write, check); err != nil {
		return m, nil, err
	}
	meta := snapshot.Meta{Cluster: m.Cluster, Member: m.Member, MemberID: m.MemberID, Endpoint: s.URL(m.Object), ServerVersion: m.StorageVersion, TakenAt: m.TakenAt, Info: *info}
	meta.Path = dst
	b, _ := json.MarshalIndent(meta, "", "  ")
	if err := atomicfile.Write(snapshot.MetaPath(dst), append(b, '\n'), 0o600, 0o700); err != nil {
		os.Remove(dst)
		return m, nil, err
	}
	return m, info, nil
}

// Compare checks what a backup holds, as seen by what, against its
// manifest; info, when given, brings the sha256 and size too.
func Compare(object string, m *Manifest, revision, keys int64, what string, info *snapshot.Info) error {
	var bad []string
	if revision != m.Revision {
		bad = append(bad, fmt.Sprintf("revision %d, the manifest says %d", revision, m.Revision))
	}
	if keys != int64(m.Keys) {
		bad = append(bad, fmt.Sprintf("%d keys, the manifest says %d", keys, m.Keys))
	}
	if info != nil && info.SHA256 != m.SHA256 {
		bad = append(bad, fmt.Sprintf("sha256 %s, the manifest says %s", info.SHA256, m.SHA256))
	}
	if info != nil && info.Size != m.Size {
		bad = append(bad, fmt.Sprintf("%d bytes, the manifest says %d", info.Size, m.Size))
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s: %s %s", object, what, strings.Join(bad, "; "))
	}
	return nil
}

// Drill is what a restore drill found.
type Drill struct {
	Manifest *Manifest        `json:"manifest"`
	Snapshot *snapshot.Info   `json:"snapshot"`
	Served   *snapshot.Served `json:"served"`
}

// Verify is a restore drill of the backup at key, in the scratch
// directory dir: downloaded, decrypted and checked (Fetch), the database
// checked by bbolt (etcdutl's status), restored into a scratch data
// directory and served by a throwaway etcd, whose revision and keys must
// be the manifest's. Every mismatch names the object.
func Verify(ctx context.Context, s *Store, key string, identities []age.Identity, dir string) (*Drill, error) {
	p := filepath.Join(dir, "backup.db")
	m, _, err := Fetch(ctx, s, key, identities, p)
	d := &Drill{Manifest: m}
	if err != nil {
		return d, err
	}
	object := s.URL(m.Object)
	if d.Snapshot, err = snapshot.Verify(p); err != nil {
		return d, fmt.Errorf("%s: %w", object, err)
	}
	if err := Compare(object, m, d.Snapshot.Revision, int64(d.Snapshot.Keys), "etcdutl's status reads", nil); err != nil {
		return d, err
	}
	if d.Served, err = snapshot.Drill(ctx, p, dir); err != nil {
		return d, fmt.Errorf("%s: %w", object, err)
	}
	if err := Compare(object, m, d.Served.Revision, d.Served.Keys, "the etcd restored from it serves", nil); err != nil {
		return d, err
	}
	return d, nil
}

// ReadIdentities reads the age identities of a key file.
func ReadIdentities(path string) ([]age.Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--identity: %w", err)
	}
	defer f.Close()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		return nil, fmt.Errorf("--identity %s: %w", path, err)
	}
	if len(ids) == 0 {
		return nil, errors.New("--identity " + path + ": no age identity in it")
	}
	return ids, nil
}
