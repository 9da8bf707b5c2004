package snapshot

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// feed writes data to c in chunks of random sizes, as a network delivers it.
func feed(t *testing.T, c *Check, data []byte) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	for len(data) > 0 {
		n := min(len(data), 1+r.IntN(70000))
		if _, err := c.Write(data[:n]); err != nil {
			t.Fatal(err)
		}
		data = data[n:]
	}
}

// The revision and the keys read from a stream's pages are those etcdutl's
// status reads from the file: with overflow pages (values over a page),
// pages freed by deletes and a compaction, and a defragmented database.
func TestCheckReadsWhatStatusReads(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	cli := startEtcd(t, filepath.Join(t.TempDir(), "etcd"), "one")
	ctx := context.Background()
	dir := t.TempDir()
	check := func(step string) {
		t.Helper()
		data := stream(t, cli)
		c := NewCheck()
		feed(t, c, data)
		got, err := c.Result()
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		p := filepath.Join(dir, step+".db")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		want, err := Verify(p)
		if err != nil {
			t.Fatal(err)
		}
		if got.Revision != want.Revision || got.Keys != want.Keys || got.SHA256 != want.SHA256 || got.Size != want.Size {
			t.Errorf("%s: read %+v from the stream, etcdutl reads %+v", step, got, want)
		}
		t.Logf("%s: revision %d, %d keys, %d bytes", step, got.Revision, got.Keys, got.Size)
	}
	check("empty")
	for i := range 3000 {
		put(t, cli, fmt.Sprintf("/k/%05d", i), strings.Repeat("v", 300))
	}
	for i := range 5 {
		put(t, cli, fmt.Sprintf("/big/%d", i), strings.Repeat("b", 200000))
	}
	check("written")
	if _, err := cli.Delete(ctx, "/k/0", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	rev := put(t, cli, "/k/last", "x")
	if _, err := cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		put(t, cli, fmt.Sprintf("/k/%05d", i), "again")
	}
	check("compacted")
	if _, err := cli.Defragment(ctx, cli.Endpoints()[0]); err != nil {
		t.Fatal(err)
	}
	check("defragmented")
}

// A byte flipped anywhere, a stream cut short or one with something else
// is refused.
func TestCheckRefuses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	cli := startEtcd(t, filepath.Join(t.TempDir(), "etcd"), "one")
	for i := range 200 {
		put(t, cli, fmt.Sprintf("/k/%03d", i), strings.Repeat("v", 500))
	}
	data := stream(t, cli)
	for _, at := range []int{10, 4096 + 20, len(data) / 2, len(data) - 40, len(data) - 1} {
		bad := bytes.Clone(data)
		bad[at] ^= 0x10
		c := NewCheck()
		feed(t, c, bad)
		if _, err := c.Result(); err == nil {
			t.Errorf("a byte flipped at %d of %d: accepted", at, len(data))
		}
	}
	for name, bad := range map[string][]byte{
		"cut":       data[:len(data)-4096],
		"not bbolt": append(bytes.Repeat([]byte{'x'}, 8192), make([]byte, 32)...),
	} {
		c := NewCheck()
		feed(t, c, bad)
		if _, err := c.Result(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A restore drill serves the snapshot's revision and keys.
func TestDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	cli := startEtcd(t, filepath.Join(t.TempDir(), "etcd"), "one")
	for i := range 120 {
		put(t, cli, fmt.Sprintf("/k/%03d", i), "v")
	}
	rev := put(t, cli, "/k/last", "x")
	p := filepath.Join(t.TempDir(), "s.db")
	if err := os.WriteFile(p, stream(t, cli), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Drill(context.Background(), p, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got.Revision != rev || got.Keys != 121 {
		t.Errorf("served revision %d, %d keys; want %d, 121", got.Revision, got.Keys, rev)
	}
}
