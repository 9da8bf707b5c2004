package fakehost_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/fakehost"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
)

// flockHost is a fake host that plays the shell facts.Gather holds open to
// lock a host: it takes the lock unless another run holds it, and keeps it
// until its input ends.
type flockHost struct {
	host     *fakehost.Host
	mu       sync.Mutex
	holder   string
	released chan string
}

var holderLine = regexp.MustCompile(`printf '%s\\n' '([^']*)' > '([^']*)'`)

func newFlockHost(t *testing.T) *flockHost {
	f := &flockHost{host: fakehost.New("node-1"), released: make(chan string, 4)}
	f.host.HandleStart(fakehost.Contains("flock -n 9"), func(ctx context.Context, cmd string, stdin io.Reader, stdout io.Writer) error {
		m := holderLine.FindStringSubmatch(cmd)
		if m == nil {
			t.Errorf("no holder in the lock's script:\n%s", cmd)
			return fakehost.Exit(1, "")
		}
		holder, lockFile := m[1], m[2]
		if err := f.host.MkdirAll(ctx, path.Dir(lockFile), 0o700); err != nil {
			return err
		}
		f.mu.Lock()
		if f.holder != "" {
			fmt.Fprintf(stdout, "locked %s\n", f.holder)
			f.mu.Unlock()
			return fakehost.Exit(75, "")
		}
		f.holder = holder
		f.mu.Unlock()
		f.host.PutFile(lockFile, []byte(holder+"\n"), 0o644)
		now := time.Now()
		fmt.Fprintf(stdout, "clock %d.%09d\nuid 0\nend\n", now.Unix(), now.Nanosecond())

		// Held until the input ends, as the script's `exec cat` holds it.
		_, _ = io.Copy(io.Discard, stdin)
		f.mu.Lock()
		f.holder = ""
		f.mu.Unlock()
		f.released <- holder
		return nil
	})
	return f
}

// waitRelease returns the holder whose lock is let go next.
func (f *flockHost) waitRelease(t *testing.T, ctx context.Context) string {
	t.Helper()
	select {
	case holder := <-f.released:
		return holder
	case <-ctx.Done():
		t.Fatal("the lock was not let go")
		return ""
	}
}

func (f *flockHost) heldBy() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.holder
}

// facts' host lock works on a fake host: it is taken, refused to another
// run, and let go by Release and by a lost connection.
func TestFactsLockOnFakeHost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f := newFlockHost(t)
	h := f.host
	req := facts.Request{NoMember: true, CAPath: "/etc/kubernetes/pki/etcd/ca.crt"}
	lockFile := path.Join(facts.StateDir, "lock")

	hostA, lockA, err := facts.Gather(ctx, h, req, "run A")
	if err != nil {
		t.Fatal(err)
	}
	if lockA == nil || hostA.Name != "node-1" || hostA.UID != 0 || f.heldBy() != "run A" {
		t.Fatalf("Gather with a holder: host %+v, lock %v, held by %q", hostA, lockA, f.heldBy())
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
	if got := f.waitRelease(t, ctx); got != "run A" || f.heldBy() != "" {
		t.Errorf("after Release: released %q, held by %q", got, f.heldBy())
	}

	_, lockB, err = facts.Gather(ctx, h, req, "run B")
	if err != nil {
		t.Fatalf("Gather after the release: %v", err)
	}
	h.Disconnect()
	if got := f.waitRelease(t, ctx); got != "run B" {
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
