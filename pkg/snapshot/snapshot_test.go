package snapshot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/etcdadm-io/etcdadm/pkg/facts"
)

func freeURL(t testing.TB) url.URL {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return url.URL{Scheme: "http", Host: l.Addr().String()}
}

// startEtcd runs one etcd member in the test process, on loopback, from
// dir; it returns a client of it.
func startEtcd(t testing.TB, dir, name string) *clientv3.Client {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = name, dir
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cu, pu := freeURL(t), freeURL(t)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = name + "=" + pu.String()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("etcd did not start")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{cu.String()}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// stream is a snapshot of cli's member, whole.
func stream(t *testing.T, cli *clientv3.Client) []byte {
	t.Helper()
	resp, err := cli.SnapshotWithVersion(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Snapshot.Close()
	b, err := io.ReadAll(resp.Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func put(t *testing.T, cli *clientv3.Client, k, v string) int64 {
	t.Helper()
	r, err := cli.Put(context.Background(), k, v)
	if err != nil {
		t.Fatal(err)
	}
	return r.Header.Revision
}

func TestSaveVerifyPrepare(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	cli := startEtcd(t, filepath.Join(t.TempDir(), "etcd"), "one")
	for i := range 50 {
		put(t, cli, fmt.Sprintf("/k/%02d", i), strings.Repeat("v", 1000))
	}
	rev := put(t, cli, "/k/last", "x")
	data := stream(t, cli)
	dir := t.TempDir()
	dst := filepath.Join(dir, "snaps", "one.db")

	info, err := Save(context.Background(), Stream{ReadCloser: io.NopCloser(bytes.NewReader(data)), ServerVersion: "3.7.0"}, dst, Meta{Cluster: "c", Member: "one"})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data[:len(data)-32])
	if info.SHA256 != fmt.Sprintf("%x", sum) || info.Size != int64(len(data)) || info.Revision != rev || info.Keys != 51 {
		t.Errorf("info %+v; want sha256 %x, size %d, revision %d, 51 keys", info, sum, len(data), rev)
	}
	if st, err := os.Stat(dst); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("saved file: %v %v", st, err)
	}
	meta, err := ReadMeta(dst)
	if err != nil || meta.Cluster != "c" || meta.SHA256 != info.SHA256 || meta.Revision != rev {
		t.Fatalf("metadata %+v %v", meta, err)
	}
	if again, err := Verify(dst); err != nil || *again != *info {
		t.Fatalf("verify: %+v %v, want %+v", again, err, info)
	}
	if _, err := Save(context.Background(), Stream{ReadCloser: io.NopCloser(bytes.NewReader(data))}, dst, Meta{}); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("saving over a snapshot: %v", err)
	}

	// The database alone, its trailer computed here, is kept only once
	// Confirm says it is the snapshot's, which it is asked after the last
	// byte.
	body := func(confirm func() error) Stream {
		return Stream{ReadCloser: io.NopCloser(bytes.NewReader(data[:len(data)-32])), Body: true, Size: int64(len(data) - 32), Confirm: confirm}
	}
	var read bool
	heldDst := filepath.Join(dir, "held", "ok.db")
	got, err := Save(context.Background(), body(func() error { read = true; return nil }), heldDst, Meta{})
	if err != nil || !read || got.SHA256 != info.SHA256 || got.Size != info.Size {
		t.Errorf("the body saved: %+v, confirmed %v, %v; want %+v", got, read, err, info)
	}
	let := errors.New("the member let its snapshot go")
	if _, err := Save(context.Background(), body(func() error { return let }), filepath.Join(dir, "held", "let.db"), Meta{}); !errors.Is(err, let) {
		t.Errorf("the body saved though unconfirmed: %v", err)
	}
	if left, _ := os.ReadDir(filepath.Dir(heldDst)); len(left) != 2 {
		t.Errorf("files beside the confirmed snapshot: %v", left)
	}

	// Truncated, corrupted and cut streams leave nothing behind.
	corrupted := bytes.Clone(data)
	corrupted[len(corrupted)/2] ^= 1
	for name, s := range map[string]io.Reader{
		"truncated": bytes.NewReader(data[:len(data)-4096]),
		"corrupted": bytes.NewReader(corrupted),
		"cut":       io.MultiReader(bytes.NewReader(data[:10000]), errReader{}),
	} {
		p := filepath.Join(dir, "bad", name+".db")
		if _, err := Save(context.Background(), Stream{ReadCloser: io.NopCloser(s)}, p, Meta{}); err == nil {
			t.Errorf("%s: saved", name)
		}
		left, _ := os.ReadDir(filepath.Dir(p))
		if len(left) > 0 {
			t.Errorf("%s: files left: %v", name, left)
		}
		if err := os.WriteFile(p, data[:len(data)-4096], 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Verify(p); err == nil {
			t.Errorf("verify of a truncated file passed")
		}
		os.Remove(p)
	}

	// Three members' data directories: the snapshot's keys, the revision
	// bumped (the bump itself writes a record that status counts).
	out := filepath.Join(dir, "restore")
	members := []RestoreMember{{"a", "http://127.0.0.1:1"}, {"b", "http://127.0.0.1:2"}, {"c", "http://127.0.0.1:3"}}
	if err := Prepare(dst, out, members, "token-1"); err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		for _, p := range []string{"member/snap/db", "member/wal"} {
			if _, err := os.Stat(filepath.Join(out, m.Name, p)); err != nil {
				t.Errorf("%s: %v", m.Name, err)
			}
		}
		st, err := status(filepath.Join(out, m.Name, "member", "snap", "db"))
		if err != nil {
			t.Fatal(err)
		}
		if st.Revision != rev+RevisionBump || st.Keys < 51 {
			t.Errorf("%s: revision %d and %d keys, want %d and the 51 keys", m.Name, st.Revision, st.Keys, rev+RevisionBump)
		}
	}

	// The archive holds the tree, root's, private.
	var buf bytes.Buffer
	if err := Archive(&buf, filepath.Join(out, "a")); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	seen := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[h.Name] = true
		if h.Uid != 0 || h.Gid != 0 || (h.Typeflag == tar.TypeDir && h.Mode != 0o700) || (h.Typeflag == tar.TypeReg && h.Mode != 0o600) {
			t.Errorf("%s: uid %d gid %d mode %o", h.Name, h.Uid, h.Gid, h.Mode)
		}
	}
	if !seen["member/snap/db"] || !seen["member/wal/"] {
		t.Errorf("archive entries %v", seen)
	}
}

// A data directory made by Prepare starts as a member with the snapshot's
// keys, under a new cluster ID.
func TestPreparedDataStarts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	cli, dir, dst, _ := savedSnapshot(t, "/kept")
	pu := freeURL(t)
	if err := Prepare(dst, filepath.Join(dir, "out"), []RestoreMember{{"solo", pu.String()}}, "token-2"); err != nil {
		t.Fatal(err)
	}
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = "solo", filepath.Join(dir, "out", "solo")
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cu := freeURL(t)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = "solo=" + pu.String()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("the restored member did not start")
	}
	c2, err := clientv3.New(clientv3.Config{Endpoints: []string{cu.String()}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	r, err := c2.Get(context.Background(), "/kept")
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "yes" {
		t.Fatalf("get /kept from the restored member: %v %v", r, err)
	}
	if r.Header.Revision < RevisionBump {
		t.Errorf("revision %d, want it bumped past %d", r.Header.Revision, int64(RevisionBump))
	}
	old, _ := cli.Get(context.Background(), "/kept")
	if old.Header.ClusterId == r.Header.ClusterId {
		t.Errorf("the restored member kept the cluster ID %x", r.Header.ClusterId)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

// savedSnapshot saves, into a new directory, a snapshot of a member that
// holds key: a client of the member, the directory, the snapshot's path
// and its bytes.
func savedSnapshot(t *testing.T, key string) (cli *clientv3.Client, dir, dst string, data []byte) {
	t.Helper()
	cli = startEtcd(t, filepath.Join(t.TempDir(), "etcd"), "one")
	put(t, cli, key, "yes")
	data = stream(t, cli)
	dir = t.TempDir()
	dst = filepath.Join(dir, "s.db")
	if _, err := Save(context.Background(), Stream{ReadCloser: io.NopCloser(bytes.NewReader(data))}, dst, Meta{}); err != nil {
		t.Fatal(err)
	}
	return cli, dir, dst, data
}

// The IDs Identity computes are those the restore writes in each member's
// write-ahead log; only makes just the members it names, for the same
// cluster; another token is another cluster.
func TestIdentityOfRestoredData(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	_, dir, dst, data := savedSnapshot(t, "/k")
	members := []RestoreMember{{"a", "https://192.0.2.1:2380"}, {"b", "https://192.0.2.2:2380"}, {"c", "https://192.0.2.3:2380"}}
	cluster, ids, err := Identity(members, "token-1")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if err := Prepare(dst, out, members, "token-1", "b", "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "a")); err == nil {
		t.Error("a's data directory was made, but only b and c were asked for")
	}
	for _, name := range []string{"b", "c"} {
		wals, _ := filepath.Glob(filepath.Join(out, name, "member", "wal", "*.wal"))
		if len(wals) == 0 {
			t.Fatalf("%s: no WAL", name)
		}
		b, err := os.ReadFile(wals[0])
		if err != nil {
			t.Fatal(err)
		}
		member, cid, err := facts.WALMetadata(b)
		if err != nil || member != ids[name] || cid != cluster {
			t.Errorf("%s: WAL member %x cluster %x (%v), want %x %x", name, member, cid, err, ids[name], cluster)
		}
	}
	if other, _, _ := Identity(members, "token-2"); other == cluster {
		t.Error("another token gives the same cluster ID")
	}
	if size := DataDirSize(int64(len(data))); size < int64(len(data))+64_000_000 {
		t.Errorf("a made data directory is %d bytes with its write-ahead log, DataDirSize says %d", int64(len(data))+64_000_000, size)
	}
}
