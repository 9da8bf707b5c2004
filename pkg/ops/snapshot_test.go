package ops_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
	"github.com/etcdadm-io/etcdadm/pkg/snapshot"
)

// A snapshot saved into etcdadm's snapshots directory is 0600, and the
// directory, made by an older etcdadm open to others, is 0700 with a
// .gitignore afterwards.
func TestSnapshotIsPrivate(t *testing.T) {
	t.Parallel()
	m := maintain(t, 1)
	m.inv.Dir = t.TempDir()
	dir := snapshot.Dir(m.inv)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	p := filepath.Join(dir, "test.db")
	if err := ops.Execute(context.Background(), m.env(-1), ops.Snapshot{Path: p}); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, p: 0o600, snapshot.MetaPath(p): 0o600} {
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: %v, mode %v; want %04o", path, err, st.Mode(), want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ".gitignore")); err != nil {
		t.Errorf("no .gitignore: %v", err)
	}
}

// filled writes n values of 256 KiB under /big/ through the first member
// and returns the client it wrote with, closed when the test ends.
func (m *maintained) filled(t *testing.T, n int) *clientv3.Client {
	t.Helper()
	kv, err := m.cli.Connect(ops.Endpoints(m.inv)[0].ClientURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	if err := fill(t, kv, "/big/", n, 256<<10); err != nil {
		t.Fatal(err)
	}
	return kv
}

// slowHost reads files as the local transport does, but hands out each
// command's output slowly: a held snapshot's file is read over seconds
// while the member writes.
type slowHost struct{ remote.Transport }

func (h slowHost) Start(ctx context.Context, cmd string) (*remote.Process, error) {
	p, err := h.Transport.Start(ctx, cmd)
	if err == nil {
		p.Stdout = &slowReader{r: p.Stdout}
	}
	return p, err
}

type slowReader struct{ r io.Reader }

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(2 * time.Millisecond)
	return s.r.Read(p[:min(len(p), 16<<10)])
}

// A database of some 12 MB read from the member's file while it is
// rewritten as fast as the member takes writes: the snapshot is the
// member's keys at its revision exactly, value for value, as the member
// answers them at that revision, because the member held its snapshot open
// until the file was read.
func TestHeldSnapshotIsTheMembersDatabaseAtItsRevision(t *testing.T) {
	t.Parallel()
	m := maintain(t, 1)
	m.inv.Dir = t.TempDir()
	m.inv.Spec.Etcd.DataDir = m.c.Members[0].Dir
	kv := m.filled(t, 48)
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var wrote atomic.Int64
	done := make(chan error, 1)
	go func() {
		// Every value rewritten over and over: each write frees the pages
		// of the value it replaces, which the next writes take.
		for i := 0; ctx.Err() == nil; i++ {
			// Paced, and smaller than the values they replace: the pages
			// the open snapshot holds make the database grow meanwhile.
			time.Sleep(time.Millisecond)
			v := strings.Repeat(strconv.Itoa(i%10), 32<<10)
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := kv.Put(wctx, fmt.Sprintf("/big/%06d", i%48), v)
			cancel()
			if err != nil && ctx.Err() == nil {
				done <- err
				return
			}
			wrote.Add(1)
		}
		done <- nil
	}()
	time.Sleep(200 * time.Millisecond)
	p := filepath.Join(t.TempDir(), "held.db")
	src := m.status(t, 0)
	start := wrote.Load()
	info, err := ops.SaveSnapshot(ctx, m.inv, m.cli, src, p, ops.SaveOptions{Host: slowHost{remote.NewLocal(src.Name, false)}, Log: progress.NewLog(nil)})
	if err != nil {
		t.Fatal(err)
	}
	during := wrote.Load() - start
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if during < 20 {
		t.Fatalf("only %d writes while the file was read: the test proves nothing", during)
	}
	meta, err := snapshot.ReadMeta(p)
	if err != nil || meta == nil || meta.Read != snapshot.ReadHeldFile {
		t.Fatalf("the snapshot was not read from the member's file: %+v, %v", meta, err)
	}
	if _, err := snapshot.Verify(p); err != nil {
		t.Fatal(err)
	}
	got := dbKeys(t, p, info.Revision)
	resp, err := kv.Get(t.Context(), "/big/", clientv3.WithPrefix(), clientv3.WithRev(info.Revision))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 48 || len(got) != 48 {
		t.Fatalf("%d keys at revision %d in the snapshot, %d in the member; want 48", len(got), info.Revision, len(resp.Kvs))
	}
	for _, want := range resp.Kvs {
		g, ok := got[string(want.Key)]
		if !ok || g.ModRevision != want.ModRevision || !bytes.Equal(g.Value, want.Value) {
			t.Fatalf("%s at revision %d: the snapshot has mod revision %d (%d bytes), the member %d (%d bytes)", want.Key, info.Revision, g.ModRevision, len(g.Value), want.ModRevision, len(want.Value))
		}
	}
	t.Logf("%d writes while the snapshot at revision %d was read", during, info.Revision)
}

// dbKeys reads a snapshot's database as etcd's store holds it: every key's
// latest version at or before rev.
func dbKeys(t *testing.T, p string, rev int64) map[string]*mvccpb.KeyValue {
	t.Helper()
	db, err := bolt.Open(p, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string]*mvccpb.KeyValue{}
	err = db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("key")).ForEach(func(k, v []byte) error {
			// A revision key is its main revision, '_', its sub revision,
			// and a 't' after a deletion's.
			if int64(binary.BigEndian.Uint64(k[:8])) > rev {
				return nil
			}
			kv := &mvccpb.KeyValue{}
			if err := proto.Unmarshal(v, kv); err != nil {
				return err
			}
			if len(k) == 18 && k[17] == 't' {
				delete(out, string(kv.Key))
				return nil
			}
			out[string(kv.Key)] = kv
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A member whose database file is not where the inventory says is
// streamed from, with a warning: the snapshot is whole either way.
func TestHeldSnapshotFallsBackToTheStream(t *testing.T) {
	t.Parallel()
	m := maintain(t, 1)
	m.inv.Spec.Etcd.DataDir = t.TempDir()
	m.filled(t, 40)
	var log bytes.Buffer
	p := filepath.Join(t.TempDir(), "s.db")
	src := m.status(t, 0)
	if _, err := ops.SaveSnapshot(t.Context(), m.inv, m.cli, src, p, ops.SaveOptions{Host: remote.NewLocal(src.Name, false), Log: progress.NewLog(progress.New(&log, nil))}); err != nil {
		t.Fatal(err)
	}
	if meta, err := snapshot.ReadMeta(p); err != nil || meta == nil || meta.Read != snapshot.ReadStream {
		t.Fatalf("want a streamed snapshot, got %+v, %v", meta, err)
	}
	if !strings.Contains(log.String(), "streaming the snapshot instead") || !strings.Contains(log.String(), "member/snap/db") {
		t.Errorf("no warning naming the file:\n%s", log.String())
	}
	if _, err := snapshot.Verify(p); err != nil {
		t.Fatal(err)
	}
}
