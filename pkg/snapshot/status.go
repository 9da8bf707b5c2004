package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"sync"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/server/v3/storage/mvcc"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"google.golang.org/protobuf/encoding/protowire"
)

// status checks the database at p as `etcdutl snapshot status` does, and
// reads the same revision, key count, hash and storage version: bbolt's
// own check of every page, and the CRC-32C of every bucket's name, keys
// and values. The two run side by side, each in a read transaction of
// its own, and a key's name is read from its value without decoding the
// value whole.
func status(p string) (info *Info, err error) {
	// bbolt panics on some damaged pages: a damaged file is an error.
	defer func() {
		if r := recover(); r != nil {
			info, err = nil, fmt.Errorf("%s: the database does not check out: %v", p, r)
		}
	}()
	// The pages are faulted in as the check and the walk reach them, on
	// both of their threads: mapping them all in at once (MAP_POPULATE)
	// was measured slower, on one thread before either starts.
	db, err := bolt.Open(p, 0o400, &bolt.Options{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("%s: the database does not check out: %w", p, err)
	}
	defer db.Close()
	var checkErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		checkErr = db.View(func(tx *bolt.Tx) error {
			var problems []string
			for e := range tx.Check() {
				problems = append(problems, e.Error())
			}
			if len(problems) > 0 {
				return fmt.Errorf("bbolt's check found %d problems: %s", len(problems), strings.Join(problems, "; "))
			}
			return nil
		})
	})
	info = &Info{Path: p}
	walkErr := db.View(func(tx *bolt.Tx) error { return walk(tx, info) })
	wg.Wait()
	if err := errors.Join(checkErr, walkErr); err != nil {
		return nil, fmt.Errorf("%s: the database does not check out: %w", p, err)
	}
	return info, nil
}

// walk reads what etcdutl's status reports from tx into info.
func walk(tx *bolt.Tx, info *Info) error {
	if tx.Bucket(schema.Meta.Name()) != nil {
		if v := schema.ReadStorageVersionFromSnapshot(tx); v != nil {
			info.StorageVersion = v.String()
		}
	}
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	live := map[string]struct{}{}
	c := tx.Cursor()
	for name, _ := c.First(); name != nil; name, _ = c.Next() {
		b := tx.Bucket(name)
		if b == nil {
			return fmt.Errorf("%q is not a bucket", name)
		}
		h.Write(name)
		keys := bytes.Equal(name, schema.Key.Name())
		err := b.ForEach(func(k, v []byte) error {
			h.Write(k)
			h.Write(v)
			if !keys {
				return nil
			}
			if len(k) < 17 {
				return fmt.Errorf("revision key %x is too short", k)
			}
			info.Revision = mvcc.BytesToRev(k).Main
			key, err := kvKey(v)
			if err != nil {
				return fmt.Errorf("revision %x: %w", k, err)
			}
			if mvcc.IsTombstone(k) {
				delete(live, string(key))
			} else {
				live[string(key)] = struct{}{}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("bucket %q: %w", name, err)
		}
	}
	info.Keys = len(live)
	info.Hash = h.Sum32()
	return nil
}

// kvKey is the key of an mvccpb.KeyValue, its field 1, read without
// decoding the rest.
func kvKey(b []byte) ([]byte, error) {
	var key []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil, protowire.ParseError(m)
			}
			key = v
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return nil, protowire.ParseError(m)
		}
		b = b[m:]
	}
	return key, nil
}
