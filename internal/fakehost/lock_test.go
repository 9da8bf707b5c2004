package fakehost_test

import (
	"context"
	"errors"
	"io/fs"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/fakehost"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
)

// facts' host lock works on a fake host: it is taken, refused to another
// run, let go by Release; a lost connection does not let it go, its lease
// does when it runs out.
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
	if lockA == nil || hostA.Name != "node-1" || hostA.UID != 0 || f.HeldBy() != "run A" || lockA.Held() != nil {
		t.Fatalf("Gather with a holder: host %+v, lock %v, held by %q", hostA, lockA, f.HeldBy())
	}
	if b, _, ok := h.File(lockFile); !ok || !strings.HasSuffix(string(b), "holder run A\n") {
		t.Errorf("lock file: %q, %v", b, ok)
	}
	if fi, err := h.Stat(ctx, facts.StateDir); err != nil || fi.Mode != fs.ModeDir|0o700 {
		t.Errorf("state directory: %+v, %v", fi, err)
	}

	hostB, lockB, err := facts.Gather(ctx, h, req, "run B")
	if !errors.Is(err, facts.ErrLocked) || lockB != nil || hostB == nil || hostB.LockHolder != "run A" || hostB.LockRun == "" || hostB.LockUntil.IsZero() {
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
	defer lockB.Release()
	h.Disconnect()
	if f.HeldBy() != "run B" {
		t.Errorf("a lost connection let the lock go to %q", f.HeldBy())
	}

	h2 := fakehost.New("node-2")
	f2 := fakehost.HandleFlock(h2)
	f2.HoldFor("run C", "c0ffee", -time.Second)
	if _, lockD, err := facts.Gather(ctx, h2, req, "run D"); err != nil || f2.HeldBy() != "run D" {
		t.Errorf("a lease that ran out: %v, held by %q", err, f2.HeldBy())
	} else {
		lockD.Release()
	}
	if u := h.Unhandled(); len(u) != 0 {
		t.Errorf("unhandled commands: %q", u)
	}
}
