package backup

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"
)

// Manifest is the small JSON object next to each backup: what it holds
// and where it comes from.
type Manifest struct {
	Cluster string `json:"cluster"`
	// Object is the backup's key in the bucket.
	Object  string    `json:"object"`
	TakenAt time.Time `json:"takenAt"`
	// Period is the start of the schedule's period the backup is for;
	// zero for one taken on demand.
	Period   time.Time `json:"period,omitzero"`
	Revision int64     `json:"revision"`
	// Keys are the keys the snapshot holds, as `etcdctl get --count-only`
	// counts them.
	Keys int `json:"keys"`
	// Size and SHA256 are the snapshot's (etcd's sha256 trailer included
	// in the size), before encryption; ObjectSize is the object's.
	Size           int64  `json:"size"`
	SHA256         string `json:"sha256"`
	ObjectSize     int64  `json:"objectSize"`
	Member         string `json:"member"`
	MemberID       string `json:"memberID,omitempty"`
	EtcdVersion    string `json:"etcdVersion,omitempty"`
	StorageVersion string `json:"storageVersion,omitempty"`
	// Recipients are the age recipients it is encrypted for; none when
	// it is not.
	Recipients []string `json:"recipients,omitempty"`
	// Seconds is how long the backup took.
	Seconds float64 `json:"seconds"`
}

// Encrypted reports whether the object is encrypted.
func (m *Manifest) Encrypted() bool { return len(m.Recipients) > 0 }

// ManifestKey is where the manifest of the object at key is.
func ManifestKey(key string) string { return key + ".json" }

// incompleteDir holds uploads whose revision was not known yet; an object
// takes its name once the stream checked out.
const incompleteDir = ".incomplete/"

// ObjectKey is the key of a backup of cluster taken at t at revision rev:
// <prefix><cluster>/<UTC time>-r<revision>.db, and .age when encrypted.
func (s *Store) ObjectKey(cluster string, t time.Time, rev int64, encrypted bool) string {
	k := fmt.Sprintf("%s%s-r%d.db", s.ClusterDir(cluster), t.UTC().Format("20060102T150405Z"), rev)
	if encrypted {
		k += ".age"
	}
	return k
}

// Backup is one backup found in the bucket: its object, its manifest, or
// both when it is whole.
type Backup struct {
	Key      string    `json:"key"`
	Object   *Object   `json:"object,omitempty"`
	Manifest *Manifest `json:"manifest,omitempty"`
	// Problem says why it is not whole; empty when it is.
	Problem string `json:"problem,omitempty"`
}

// Good reports whether the backup is whole: an object, and a manifest
// that describes it.
func (b *Backup) Good() bool { return b.Problem == "" }

// Time is when the backup was taken, or its object written.
func (b *Backup) Time() time.Time {
	if b.Manifest != nil {
		return b.Manifest.TakenAt
	}
	if b.Object != nil {
		return b.Object.LastModified
	}
	return time.Time{}
}

// maxManifest bounds a manifest's size: a few hundred bytes.
const maxManifest = 1 << 20

// Catalog lists cluster's backups, newest first, whole or not; the
// uploads still under way (or cut) are in incomplete.
func Catalog(ctx context.Context, s *Store, cluster string) (backups []Backup, incomplete []Object, err error) {
	objs, err := s.List(ctx, s.ClusterDir(cluster))
	if err != nil {
		return nil, nil, err
	}
	byKey := map[string]*Backup{}
	var order []string
	get := func(k string) *Backup {
		if b, ok := byKey[k]; ok {
			return b
		}
		byKey[k] = &Backup{Key: k}
		order = append(order, k)
		return byKey[k]
	}
	for i := range objs {
		o := objs[i]
		rel := strings.TrimPrefix(o.Key, s.ClusterDir(cluster))
		switch {
		case strings.HasPrefix(rel, incompleteDir):
			incomplete = append(incomplete, o)
		case strings.HasSuffix(o.Key, ".db.json") || strings.HasSuffix(o.Key, ".db.age.json"):
			b := get(strings.TrimSuffix(o.Key, ".json"))
			data, err := s.ReadSmall(ctx, o.Key, maxManifest)
			if err != nil {
				return nil, nil, err
			}
			var m Manifest
			if err := json.Unmarshal(data, &m); err != nil {
				b.Problem = fmt.Sprintf("its manifest %s does not read: %v", path.Base(o.Key), err)
				continue
			}
			b.Manifest = &m
		case strings.HasSuffix(o.Key, ".db") || strings.HasSuffix(o.Key, ".db.age"):
			get(o.Key).Object = &o
		}
	}
	for _, k := range order {
		b := byKey[k]
		switch {
		case b.Problem != "":
		case b.Object == nil:
			b.Problem = "its manifest is there, its object is not"
		case b.Manifest == nil:
			b.Problem = "it has no manifest (an upload cut before its end, or a file put there by hand)"
		case b.Manifest.ObjectSize != b.Object.Size:
			b.Problem = fmt.Sprintf("its object has %d bytes, its manifest says %d", b.Object.Size, b.Manifest.ObjectSize)
		case b.Manifest.Object != b.Key:
			b.Problem = fmt.Sprintf("its manifest describes %s", b.Manifest.Object)
		}
		backups = append(backups, *b)
	}
	sort.SliceStable(backups, func(i, j int) bool { return backups[i].Time().After(backups[j].Time()) })
	return backups, incomplete, nil
}

// Latest is the newest whole backup; nil when there is none.
func Latest(backups []Backup) *Backup {
	for i := range backups {
		if backups[i].Good() {
			return &backups[i]
		}
	}
	return nil
}

// staleAfter is how old an object that is not part of a whole backup
// must be to be pruned: an upload under way is not.
const staleAfter = 6 * time.Hour

// Prunable lists the keys to delete so that keep whole backups remain:
// the oldest whole backups beyond keep (each manifest before its object,
// so a pruning cut short leaves a backup without manifest, not a manifest
// without backup), and what is left of backups that are not whole, and
// of uploads cut short, once older than six hours. The newest whole backup
// is never among them.
func Prunable(backups []Backup, incomplete []Object, keep int, now time.Time) []string {
	keep = max(keep, 1)
	var out []string
	good := 0
	for _, b := range backups {
		switch {
		case b.Good():
			good++
			if good > keep {
				out = append(out, ManifestKey(b.Key), b.Key)
			}
		case now.Sub(b.Time()) > staleAfter:
			if b.Manifest != nil || b.Problem != "" && b.Object == nil {
				out = append(out, ManifestKey(b.Key))
			}
			if b.Object != nil {
				out = append(out, b.Key)
			}
		}
	}
	for _, o := range incomplete {
		if now.Sub(o.LastModified) > staleAfter {
			out = append(out, o.Key)
		}
	}
	return out
}
