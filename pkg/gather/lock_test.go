package gather

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/fakehost"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/hosts"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
	"github.com/etcdadm-io/etcdadm/pkg/runtime/kubelet"
)

// lockingHosts are three control-plane hosts on fake hosts that play the
// lock's shell, in inventory order.
func lockingHosts(t *testing.T) (*config.Cluster, *hosts.Hosts, []*fakehost.Host, []*fakehost.Flock) {
	t.Helper()
	c := &config.Cluster{Spec: config.Spec{ControlPlane: config.ControlPlane{Hosts: []config.ControlPlaneHost{
		{Name: "cp0", Address: "192.0.2.50"}, {Name: "cp1", Address: "192.0.2.51"}, {Name: "cp2", Address: "192.0.2.52"}}}}}
	hs := &hosts.Hosts{Order: c.AllHosts(), T: map[string]remote.Transport{}}
	var fakes []*fakehost.Host
	var locks []*fakehost.Flock
	for _, h := range c.AllHosts() {
		f := fakehost.New(h.Name)
		fakes = append(fakes, f)
		locks = append(locks, fakehost.HandleFlock(f))
		hs.T[h.Name] = f
	}
	return c, hs, fakes, locks
}

// A run that writes locks every host, the first host alone first, and lets
// them all go when it is done.
func TestGatherLocksEveryHostFirstHostFirst(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, hs, fakes, locks := lockingHosts(t)
	f, err := Gather(ctx, c, kubelet.Runtime{}, hs, nil, Options{Lock: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range locks {
		if !strings.HasPrefix(l.HeldBy(), "etcdadm pid ") {
			t.Errorf("%s is held by %q, want this run", fakes[i].Host(), l.HeldBy())
		}
	}
	if len(f.Hosts) != 3 {
		t.Errorf("facts of %d hosts, want 3", len(f.Hosts))
	}
	f.Release()
	for i, l := range locks {
		if got := l.Released(ctx); got == "" {
			t.Errorf("%s's lock was not let go", fakes[i].Host())
		}
	}
	// A run that only reads takes no lock: it runs the facts' script.
	for _, f := range fakes {
		f.Handle(fakehost.Contains("uid"), fakehost.Reply("uid 0\nend\n"))
	}
	if _, err := Gather(ctx, c, kubelet.Runtime{}, hs, nil, Options{}); err != nil {
		t.Fatal(err)
	}
	for i, f := range fakes {
		// Taken, let go, then read.
		if calls := f.Calls(); len(calls) != 3 || strings.Contains(calls[2].Cmd, "flock") || locks[i].HeldBy() != "" {
			t.Errorf("%s: a reading run's calls %+v, lock held by %q", f.Host(), calls, locks[i].HeldBy())
		}
	}
}

// A host another run holds fails the gather, naming the holder; the locks
// taken on the other hosts are let go, and a host after the first is not
// locked while the first is refused.
func TestGatherRefusesAHostAnotherRunHolds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, hs, fakes, locks := lockingHosts(t)
	locks[2].Hold("etcdadm pid 1 of ops@laptop")
	_, err := Gather(ctx, c, kubelet.Runtime{}, hs, nil, Options{Lock: true})
	var he *hosts.HostsError
	if !errors.Is(err, facts.ErrLocked) || !errors.As(err, &he) || he.Errors[0].Host != "cp2" ||
		!strings.Contains(err.Error(), "etcdadm pid 1 of ops@laptop") || !strings.Contains(err.Error(), "reading the hosts") {
		t.Fatalf("err = %v, want cp2 held by the other run", err)
	}
	for i := range 2 {
		if got := locks[i].Released(ctx); got == "" {
			t.Errorf("%s's lock was kept after the refusal", fakes[i].Host())
		}
	}

	// The first host held: no other host is locked at all.
	c, hs, fakes, locks = lockingHosts(t)
	locks[0].Hold("etcdadm pid 2 of ops@laptop")
	if _, err := Gather(ctx, c, kubelet.Runtime{}, hs, nil, Options{Lock: true}); !errors.Is(err, facts.ErrLocked) {
		t.Fatalf("err = %v, want cp0 held", err)
	}
	for _, f := range fakes[1:] {
		if n := len(f.Calls()); n != 0 {
			t.Errorf("%s was reached (%d commands) while the first host was held", f.Host(), n)
		}
	}
}

// The lease of a run of this machine that has ended (its process gone) is
// taken over at once; a live run's is refused at once, saying until when
// its lease runs.
func TestGatherTakesOverTheLeaseOfARunThatEnded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	machine, _ := os.Hostname()
	ended := fmt.Sprintf("etcdadm pid %d of root@%s since 2030-01-01T00:00:00Z", dead.Process.Pid, machine)
	c, hs, _, locks := lockingHosts(t)
	locks[1].HoldFor(ended, "deadbeef", time.Hour)
	start := time.Now()
	f, err := Gather(ctx, c, kubelet.Runtime{}, hs, nil, Options{Lock: true})
	if err != nil {
		t.Fatalf("the ended run's lease was not taken over: %v", err)
	}
	defer f.Release()
	if took := time.Since(start); took > 2*time.Second || !strings.HasPrefix(locks[1].HeldBy(), "etcdadm pid ") || locks[1].HeldBy() == ended {
		t.Errorf("after %s, held by %q", took, locks[1].HeldBy())
	}

	c, hs, _, locks = lockingHosts(t)
	locks[1].Hold(fmt.Sprintf("etcdadm pid %d of root@%s since 2030-01-01T00:00:00Z", os.Getppid(), machine))
	start = time.Now()
	_, err = Gather(ctx, c, kubelet.Runtime{}, hs, nil, Options{Lock: true})
	if !errors.Is(err, facts.ErrLocked) || time.Since(start) > 2*time.Second || !strings.Contains(err.Error(), "its lease runs until") || !strings.Contains(err.Error(), "wait for it to finish, or stop it") {
		t.Errorf("a live run's lock: err %v after %s, want a refusal at once", err, time.Since(start))
	}
}

// A run renews its hosts' leases while it holds them: a lease taken by
// another run once it ran out (the host cut off meanwhile) is seen as lost,
// and Held says so; a lease renewed is held.
func TestGatherLeaseIsRenewedAndALostOneSeen(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, hs, _, locks := lockingHosts(t)
	f, err := Gather(ctx, c, kubelet.Runtime{}, hs, nil, Options{Lock: true, Lease: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Release()
	first := locks[0].Until()
	time.Sleep(1200 * time.Millisecond)
	if err := f.Held(); err != nil || !locks[0].Until().After(first) {
		t.Fatalf("after a renewal: %v, lease until %s (was %s)", err, locks[0].Until(), first)
	}
	locks[2].HoldFor("etcdadm pid 1 of ops@laptop", "0ther", time.Hour)
	deadline := time.Now().Add(3 * time.Second)
	for f.Held() == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if err := f.Held(); !errors.Is(err, facts.ErrLockLost) || !strings.Contains(err.Error(), "cp2") || !strings.Contains(err.Error(), "ops@laptop") {
		t.Errorf("Held: %v, want cp2's lock lost to the other run", err)
	}
}
