package facts

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/shell"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// DefaultLease is how long a host's lock lasts unless its run renews it: a
// run that ended without letting go (killed, its host cut off) holds the
// host no longer than that.
const DefaultLease = 45 * time.Second

// ErrLocked is returned when another etcdadm run holds a host.
var ErrLocked = errors.New("another etcdadm run holds the host")

// ErrLockLost is returned by Lock.Held once the run can no longer count on
// its lease: another run may hold the host.
var ErrLockLost = errors.New("this run's lock of the host is lost")

// Lock is a host's lock: the file "lock" in etcdadm's state directory
// names the run that holds the host (a random ID), who it is, and when its
// lease runs out. The run renews the lease while it holds the host, so the
// lock survives a lost and reopened SSH connection; a run that ended
// without letting go holds the host until its lease runs out, or until a
// run of the same machine, knowing it ended, takes over. Every read and
// write of the file is under flock, for a moment only.
type Lock struct {
	t      remote.Transport
	file   string
	run    string
	holder string
	lease  time.Duration
	// takeover is the run whose lease this one may take.
	takeover string

	mu sync.Mutex
	// valid is until when this run can count on its lease: the last
	// renewal's sending time, plus the lease, minus a margin.
	valid   time.Time
	renewed time.Time
	lost    error
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

func newLock(t remote.Transport, req Request, holder string) *Lock {
	lease := req.Lease
	if lease <= 0 {
		lease = DefaultLease
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	return &Lock{t: t, file: path.Join(req.stateDir(), lockName), run: hex.EncodeToString(id), holder: holder, lease: lease, takeover: req.Takeover}
}

// renewEvery is how often the lease is renewed, and margin how long
// before it runs out (as this machine counts from the renewal's sending)
// the run stops counting on it.
func (l *Lock) renewEvery() time.Duration { return l.lease / 4 }
func (l *Lock) margin() time.Duration     { return l.lease / 8 }

// lockPreamble takes flock on the lock file for the script after it, for a
// moment: a run of an etcdadm before leases holds flock for its whole run,
// so it is waited for a few seconds, then refused; $holder, $run and
// $expires are what the file says.
const lockPreamble = `command -v flock >/dev/null 2>&1 || { echo noflock; exit 69; }
mkdir -p %[1]s && chmod 0700 %[1]s || exit 1
exec 9>>%[2]s || exit 1
flock -w 5 9; rc=$?
run=; expires=0; holder=
while IFS= read -r l; do case $l in "run "*) run=${l#run };; "expires "*) expires=${l#expires };; "holder "*) holder=${l#holder };; esac; done < %[2]s
case $expires in ''|*[!0-9]*) expires=0;; esac
[ -n "$run$holder" ] || holder=$(head -n 1 %[2]s)
if [ $rc = 1 ]; then printf 'locked %%s\n' "$holder"; exit 75; fi
[ $rc = 0 ] || { echo "flock failed with exit status $rc" >&2; exit 1; }
now=$(date +%%s)
`

func (l *Lock) preamble() string {
	return fmt.Sprintf(lockPreamble, shell.Quote(path.Dir(l.file)), shell.Quote(l.file))
}

// acquireScript takes the lock, unless a live lease of another run holds
// it, then runs script, the facts', without flock held.
func (l *Lock) acquireScript(script string) string {
	q := shell.Quote
	return l.preamble() + fmt.Sprintf(`if [ -n "$run" ] && [ "$run" != %[1]s ] && [ "$run" != %[2]s ] && [ "$expires" -gt "$now" ]; then
  printf 'locked %%s\nlease %%s %%s\n' "$holder" "$run" "$expires"; exit 75
fi
printf 'run %%s\nexpires %%s\nholder %%s\n' %[1]s $((now + %[3]d)) %[4]s > %[5]s
exec 9>&-
%[6]s`, q(l.run), q(orNone(l.takeover)), int(l.lease.Seconds()), q(l.holder), q(l.file), script)
}

// renewScript extends the lease, unless another run holds the lock now.
func (l *Lock) renewScript() string {
	q := shell.Quote
	return l.preamble() + fmt.Sprintf(`if [ "$run" != %[1]s ]; then printf 'lost %%s\n' "$holder"; exit 75; fi
printf 'run %%s\nexpires %%s\nholder %%s\n' %[1]s $((now + %[2]d)) "$holder" > %[3]s
echo renewed
`, q(l.run), int(l.lease.Seconds()), q(l.file))
}

// releaseScript lets the host go, if this run still holds it.
func (l *Lock) releaseScript() string {
	return l.preamble() + fmt.Sprintf(`[ "$run" != %[1]s ] || : > %[2]s
`, shell.Quote(l.run), shell.Quote(l.file))
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// refusedLock is Gather's answer when taking the lock failed: another run
// holds it, flock is missing, or the host could not be read.
func refusedLock(t remote.Transport, out []byte, err error) (*Host, *Lock, error) {
	h := &Host{Name: t.Host()}
	locked := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "noflock":
			return nil, nil, errors.New("flock is missing on the host: etcdadm locks each host it changes; install util-linux")
		case strings.HasPrefix(line, "locked"):
			locked = true
			h.LockHolder = strings.TrimSpace(strings.TrimPrefix(line, "locked"))
		case strings.HasPrefix(line, "lease "):
			if f := strings.Fields(line); len(f) == 3 {
				h.LockRun = f[1]
				if s, err := strconv.ParseInt(f[2], 10, 64); err == nil {
					h.LockUntil = time.Unix(s, 0)
				}
			}
		}
	}
	if locked {
		return h, nil, ErrLocked
	}
	return nil, nil, fmt.Errorf("read the host's state: %w", err)
}

// start counts on the lease from sent, when the script that took it was
// sent, and renews it until Release.
func (l *Lock) start(sent time.Time) {
	l.mu.Lock()
	l.valid, l.renewed = sent.Add(l.lease-l.margin()), sent
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	l.mu.Unlock()
	go l.renew()
}

func (l *Lock) renew() {
	defer close(l.done)
	tick := time.NewTicker(l.renewEvery())
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		sent := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), l.renewEvery())
		out, err := l.t.Run(ctx, l.renewScript(), nil)
		cancel()
		l.mu.Lock()
		switch {
		case err == nil:
			l.valid, l.renewed = sent.Add(l.lease-l.margin()), sent
		case bytes.HasPrefix(out, []byte("lost")):
			// Another run took the host once the lease ran out.
			l.lost = fmt.Errorf("%w on %s: another run holds it now (%s)", ErrLockLost, l.t.Host(), strings.TrimSpace(strings.TrimPrefix(string(out), "lost")))
		}
		lost := l.lost != nil
		l.mu.Unlock()
		if lost {
			return
		}
	}
}

// Held says whether the run can still count on the host's lock: nil while
// its lease was renewed recently enough, ErrLockLost once it was taken or
// could not be renewed for too long (the host cut off: another run may
// take it). A change is made only while it is held.
func (l *Lock) Held() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.lost != nil:
		return l.lost
	case l.stop == nil:
		return nil
	case time.Now().After(l.valid):
		return fmt.Errorf("%w on %s: its lease could not be renewed since %s and may have run out (the host cannot be reached?)", ErrLockLost, l.t.Host(), l.renewed.UTC().Format(time.TimeOnly))
	}
	return nil
}

// Release stops renewing the lease and lets another run take the host.
func (l *Lock) Release() {
	if l == nil {
		return
	}
	l.once.Do(func() {
		if l.stop != nil {
			close(l.stop)
			<-l.done
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = l.t.Run(ctx, l.releaseScript(), nil)
	})
}
