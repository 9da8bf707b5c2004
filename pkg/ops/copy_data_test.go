package ops_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/internal/opstest"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// copyEnv is two "hosts" on this machine: old, whose data directory holds
// a member, and the new one the operation runs on.
func copyEnv(t *testing.T, old remote.Transport) (*opstest.Env, string, string) {
	t.Helper()
	root := t.TempDir()
	data := filepath.Join(root, "old", "etcd")
	files := map[string][]byte{"member/snap/db": make([]byte, 1<<20), "member/wal/0000000000000000-0000000000000000.wal": make([]byte, 64<<10)}
	for p, b := range files {
		if _, err := rand.Read(b[:len(b)/2]); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(data, p)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, p), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := &config.Cluster{Spec: config.Spec{Hosts: []config.Host{{Name: "n2", Address: "127.0.0.1"}}}}
	e := &opstest.Env{C: c, H: c.Spec.Hosts[0], T: remote.NewLocal("n2", false), State: filepath.Join(root, "state"),
		Others: map[string]remote.Transport{"n2 (old)": old}}
	return e, data, filepath.Join(root, "new", ".etcd.etcdadm-move")
}

// The member directory arrives whole, through this process, and the three
// sha256s agree; the sending host keeps nothing of it.
func TestCopyData(t *testing.T) {
	e, data, staging := copyEnv(t, remote.NewLocal("n2 (old)", false))
	op := ops.CopyData{From: "n2 (old)", Path: data, Staging: staging}
	if err := ops.Execute(context.Background(), e, op); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"member/snap/db", "member/wal/0000000000000000-0000000000000000.wal"} {
		want, _ := os.ReadFile(filepath.Join(data, p))
		got, err := os.ReadFile(filepath.Join(staging, p))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes arrived (%v), want the %d sent", p, len(got), err, len(want))
		}
	}
	if left, _ := filepath.Glob(filepath.Join(staging, ".*")); len(left) > 0 {
		t.Errorf("left in the staging directory: %v", left)
	}
	if left, _ := filepath.Glob(filepath.Join(e.State, "*")); len(left) > 0 {
		t.Errorf("left on the sending host: %v", left)
	}
}

// A sum that does not match fails the copy, naming the three.
func TestCopyDataMismatch(t *testing.T) {
	e, data, staging := copyEnv(t, lyingSum{remote.NewLocal("n2 (old)", false)})
	err := ops.Execute(context.Background(), e, ops.CopyData{From: "n2 (old)", Path: data, Staging: staging})
	if err == nil || !strings.Contains(err.Error(), "sha256 differs") || !strings.Contains(err.Error(), "run again") {
		t.Fatalf("err %v, want the sha256s that differ", err)
	}
}

// Nothing to send is an error of the sending host.
func TestCopyDataNothingToSend(t *testing.T) {
	e, data, staging := copyEnv(t, remote.NewLocal("n2 (old)", false))
	if err := os.RemoveAll(filepath.Join(data, "member")); err != nil {
		t.Fatal(err)
	}
	err := ops.Execute(context.Background(), e, ops.CopyData{From: "n2 (old)", Path: data, Staging: staging})
	if err == nil || !strings.Contains(err.Error(), "no member directory") {
		t.Fatalf("err %v", err)
	}
}

// lyingSum reports another sha256 than the one it sent.
type lyingSum struct{ remote.Transport }

func (l lyingSum) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	out, err := l.Transport.Run(ctx, cmd, stdin)
	if strings.HasPrefix(cmd, "cat ") && strings.Contains(cmd, "copy-data.sha256") {
		return []byte(strings.Repeat("0", 64) + "  -\n"), err
	}
	return out, err
}
