package fakehost_test

import (
	"context"
	"errors"
	"io/fs"
	"path"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/fakehost"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
)

// facts' host lock works on a fake host: it is taken, refused to another
// run, and let go by Release and by a lost connection.
func TestFactsLockOnFakeHost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := fakehost.New("node-1")
	f := fakehost.HandleFlock(h)
	req := facts.Request{NoMember: true, CAPath: "/etc/kubernetes/pki/etcd/ca.crt"}
	lockFile := path.Join(facts.StateDir, "lock")

	hostA, lockA, err := facts.Gather(ctx, h, req, "run A")
	if err != nil {
		t.Fatal(err)
	}
	if lockA == nil || hostA.Name != "node-1" || hostA.UID != 0 || f.HeldBy() != "run A" {
		t.Fatalf("Gather with a holder: host %+v, lock %v, held by %q", hostA, lockA, f.HeldBy())
	}
	if b, _, ok := h.File(lockFile); !ok || string(b) != "run A\n" {
		t.Errorf("lock file: %q, %v", b, ok)
	}
	if fi, err := h.Stat(ctx, facts.StateDir); err != nil || fi.Mode != fs.ModeDir|0o700 {
		t.Errorf("state directory: %+v, %v", fi, err)
	}

	hostB, lockB, err := facts.Gather(ctx, h, req, "run B")
	if !errors.Is(err, facts.ErrLocked) || lockB != nil || hostB == nil || hostB.LockHolder != "run A" {
		t.Fatalf("second Gather: host %+v, lock %v, err %v; want ErrLocked held by run A", hostB, lockB, err)
	}

	lockA.Release()
	if got := f.Released(ctx); got != "run A" || f.HeldBy() != "" {
		t.Errorf("after Release: released %q, held by %q", got, f.HeldBy())
	}

	_, lockB, err = facts.Gather(ctx, h, req, "run B")
	if err != nil {
		t.Fatalf("Gather after the release: %v", err)
	}
	h.Disconnect()
	if got := f.Released(ctx); got != "run B" {
		t.Errorf("a lost connection released %q, want run B", got)
	}
	lockB.Release()

	if u := h.Unhandled(); len(u) != 0 {
		t.Errorf("unhandled commands: %q", u)
	}
	if n := len(h.Calls()); n != 3 {
		t.Errorf("%d commands, want the 3 locking Gathers", n)
	}
}
