package facts_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// The run directories that keep data a restore or a recovery replaced are
// read with each line of their mark whose data is there; unmarked ones, and
// a mark whose data never arrived (a run cut before the move), are not
// listed.
func TestGatherKeptBackups(t *testing.T) {
	root := t.TempDir()
	req := baseRequest(root)
	req.StateDir = filepath.Join(root, "state")
	backups := filepath.Join(req.StateDir, "backup")
	writeFile(t, filepath.Join(backups, "20300101T000000Z", facts.KeptFile), []byte("pre-restore /var/lib/etcd restore-abc-tok\npre-recovery /srv/etcd\npre-restore /srv/gone restore-abc-tok\n"), 0o600)
	writeFile(t, filepath.Join(backups, "20300101T000000Z", "var/lib/etcd/member/snap/db"), []byte("x"), 0o600)
	writeFile(t, filepath.Join(backups, "20300101T000000Z", "srv/etcd/member/snap/db"), []byte("x"), 0o600)
	if err := os.MkdirAll(filepath.Join(backups, "20300101T000000Z", "srv/gone"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(backups, "20300102T000000Z", "var/lib/etcd/member/snap/db"), []byte("x"), 0o600)
	writeFile(t, filepath.Join(backups, "20300103T000000Z", facts.KeptFile), []byte("too-short\n"), 0o600)
	req.ClientPort = freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, _, err := facts.Gather(ctx, remote.NewLocal("n1", false), req, "")
	if err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(backups, "20300101T000000Z")
	want := []facts.Kept{
		{Dir: run, What: "pre-restore", Path: "/var/lib/etcd", Ref: "restore-abc-tok"},
		{Dir: run, What: "pre-recovery", Path: "/srv/etcd"},
	}
	if diff := cmp.Diff(want, h.Kept); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
}
