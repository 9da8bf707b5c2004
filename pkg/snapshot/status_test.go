package snapshot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// status reads what `etcdutl snapshot status` reads from the same file:
// revision, live keys (after overwrites and deletions), CRC-32C of the
// buckets and storage version; a file cut short is an error, not a crash.
func TestStatusIsEtcdutls(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	cli := startEtcd(t, filepath.Join(t.TempDir(), "etcd"), "one")
	for i := range 60 {
		put(t, cli, fmt.Sprintf("/k/%02d", i%40), strings.Repeat("v", 100*i))
	}
	for i := range 7 {
		if _, err := cli.Delete(context.Background(), fmt.Sprintf("/k/%02d", i*3)); err != nil {
			t.Fatal(err)
		}
	}
	data := stream(t, cli)
	p := filepath.Join(t.TempDir(), "s.db")
	if err := os.WriteFile(p, data[:len(data)-32], 0o600); err != nil {
		t.Fatal(err)
	}
	want, err := etcdutl.NewV3(zap.NewNop()).Status(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := status(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.Revision != want.Revision || got.Keys != want.TotalKey || got.Hash != want.Hash || got.StorageVersion != want.Version || got.Keys != 33 {
		t.Errorf("status: revision %d, %d keys, hash %08x, version %q; etcdutl: revision %d, %d keys, hash %08x, version %q; want 33 keys",
			got.Revision, got.Keys, got.Hash, got.StorageVersion, want.Revision, want.TotalKey, want.Hash, want.Version)
	}
	cut := filepath.Join(t.TempDir(), "cut.db")
	if err := os.WriteFile(cut, data[:len(data)/2&^4095], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := status(cut); err == nil || !strings.Contains(err.Error(), "does not check out") {
		t.Errorf("a database cut in half: %v", err)
	}
}
