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
		if calls := f.Calls(); len(calls) != 2 || calls[1].Start || locks[i].HeldBy() != "" {
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

// A lock still held for a run of this machine that has ended is waited for
// until the host lets it go; a live run's is refused at once.
func TestGatherWaitsForTheLockOfARunThatEnded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	machine, _ := os.Hostname()
	ended := fmt.Sprintf("etcdadm pid %d of root@%s since 2030-01-01T00:00:00Z", dead.Process.Pid, machine)
	c, hs, _, locks := lockingHosts(t)
	locks[1].Hold(ended)
	go func() {
		time.Sleep(300 * time.Millisecond)
		locks[1].Hold("")
	}()
	start := time.Now()
	f, err := Gather(ctx, c, kubelet.Runtime{}, hs, nil, Options{Lock: true})
	if err != nil {
		t.Fatalf("the ended run's lock was not waited for: %v", err)
	}
	f.Release()
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("took %s: the lock was taken before it was let go", took)
	}

	c, hs, _, locks = lockingHosts(t)
	locks[1].Hold(fmt.Sprintf("etcdadm pid %d of root@%s since 2030-01-01T00:00:00Z", os.Getppid(), machine))
	start = time.Now()
	if _, err := Gather(ctx, c, kubelet.Runtime{}, hs, nil, Options{Lock: true}); !errors.Is(err, facts.ErrLocked) || time.Since(start) > 2*time.Second {
		t.Errorf("a live run's lock: err %v after %s, want a refusal at once", err, time.Since(start))
	}
}
