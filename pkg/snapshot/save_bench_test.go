package snapshot

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// benchSnapshot is a snapshot of about mb megabytes of incompressible values.
func benchSnapshot(b *testing.B, mb int) []byte {
	b.Helper()
	cli := startEtcd(b, filepath.Join(b.TempDir(), "etcd"), "bench")
	v := make([]byte, 1<<20)
	for i := range mb {
		_, _ = rand.Read(v)
		if _, err := cli.Put(context.Background(), fmt.Sprintf("/bench/%04d", i), string(v)); err != nil {
			b.Fatal(err)
		}
	}
	resp, err := cli.SnapshotWithVersion(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	data, err := io.ReadAll(resp.Snapshot)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkSaveParts times where a save's time goes on this machine, for
// a database of about 100 MB already in memory: the sha256 trailer
// check, the pages read as they pass, the whole save (written, synced,
// checked by bbolt), and bbolt's check alone.
func BenchmarkSaveParts(b *testing.B) {
	data := benchSnapshot(b, 100)
	dir := b.TempDir()
	b.Run("trailer-sha256", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for range b.N {
			th := newTrailerHash()
			_, _ = io.CopyBuffer(th, bytes.NewReader(data), make([]byte, 32<<10))
			if _, err := th.check(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("check-stream", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for range b.N {
			c := NewCheck()
			_, _ = io.CopyBuffer(c, bytes.NewReader(data), make([]byte, 32<<10))
			if _, err := c.Result(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("save", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for i := range b.N {
			p := filepath.Join(dir, fmt.Sprintf("s%d.db", i))
			if _, err := Save(context.Background(), Stream{ReadCloser: io.NopCloser(bytes.NewReader(data))}, p, Meta{}); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			os.Remove(p)
			os.Remove(MetaPath(p))
			b.StartTimer()
		}
	})
	p := filepath.Join(dir, "status.db")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		b.Fatal(err)
	}
	b.Run("bbolt-status", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for range b.N {
			if _, err := status(p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
