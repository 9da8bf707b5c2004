package ops_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/ops"
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
