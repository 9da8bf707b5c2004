package ops_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/internal/testinv"
	"github.com/etcdadm-io/etcdadm/pkg/hostfile"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/release"
)

func binaryWrite(info *release.Info, dst string) ops.Write {
	b := info.Binaries["etcd"]
	f := hostfile.File{Path: dst, Mode: 0o755, Part: hostfile.PartManifests, Source: &hostfile.Source{Archive: info.Path, Entry: b.Entry, Size: b.Size, SHA256: b.SHA256}}
	return ops.Write{Path: dst, Change: &hostfile.Change{File: f, Path: dst, Kind: hostfile.Update}}
}

// A release's binary is streamed to the host, checked by sha256 there,
// installed with its mode by a rename, and the one it replaces is kept
// under the run's backup directory for a rollback.
func TestPushBinary(t *testing.T) {
	root := t.TempDir()
	info, etcd := testinv.Release(t, root)
	dst := filepath.Join(root, "usr", "local", "bin", "etcd")
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, []byte("old etcd"), 0o700); err != nil {
		t.Fatal(err)
	}
	// What a cut push left behind goes.
	stale := filepath.Join(filepath.Dir(dst), ".etcd.etcdadm-999.tmp")
	if err := os.WriteFile(stale, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := localEnv(root)
	if err := ops.Execute(context.Background(), e, binaryWrite(info, dst)); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, etcd) {
		t.Fatalf("pushed %d bytes (%v), want the release's %d", len(got), err, len(etcd))
	}
	if st, _ := os.Stat(dst); st.Mode().Perm() != 0o755 {
		t.Errorf("mode %v, want 0755", st.Mode())
	}
	kept := filepath.Join(e.BackupDir(), dst)
	if b, err := os.ReadFile(kept); err != nil || string(b) != "old etcd" {
		t.Errorf("the old binary is not kept at %s: %q %v", kept, b, err)
	}
	if r := e.Replaced(); len(r) != 1 || r[0].Path != dst || r[0].Backup != kept {
		t.Errorf("replaced %+v", r)
	}
	if done := e.Done(); len(done) != 1 || done[0].Wrote != dst {
		t.Errorf("reported %+v", done)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dst), ".*.tmp")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// The same binary again keeps nothing.
	e2 := localEnv(root)
	if err := ops.Execute(context.Background(), e2, binaryWrite(info, dst)); err != nil {
		t.Fatal(err)
	}
	if len(e2.Replaced()) != 0 {
		t.Errorf("an identical binary was kept: %+v", e2.Replaced())
	}

	// A tarball that changed since it was read: the host refuses what it
	// received and the binary stays.
	if err := os.WriteFile(dst, []byte("old etcd"), 0o755); err != nil {
		t.Fatal(err)
	}
	op := binaryWrite(info, dst)
	op.Change.File.Source.SHA256 = strings.Repeat("0", 64)
	err = ops.Execute(context.Background(), localEnv(root), op)
	if err == nil || !strings.Contains(err.Error(), "the release tarball changed since it was read") {
		t.Errorf("a wrong sha256: %v", err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "old etcd" {
		t.Errorf("the binary changed after a refused push: %d bytes", len(b))
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dst), ".*.tmp")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
