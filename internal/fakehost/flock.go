package fakehost

import (
	"context"
	"fmt"
	"io"
	"path"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// Flock plays, on a fake host, the lock of etcdadm's state directory (see
// facts.Lock): the scripts that take it and read the host's facts, renew
// its lease, and let it go. It answers them as the lock file would: taken
// unless another run's lease holds it, renewed while the run holds it.
type Flock struct {
	host     *Host
	mu       sync.Mutex
	holder   string
	run      string
	expires  time.Time
	released chan string
}

var (
	acquireLine = regexp.MustCompile(`\[ "\$run" != '([^']*)' \] && \[ "\$run" != '([^']*)' \]`)
	writeLine   = regexp.MustCompile(`printf 'run %s\\nexpires %s\\nholder %s\\n' '([^']*)' \$\(\(now \+ (\d+)\)\) ('[^']*'|"\$holder") > '([^']*)'`)
	runLine     = regexp.MustCompile(`\[ "\$run" != '([^']*)' \]`)
)

// HandleFlock answers h's locking scripts.
func HandleFlock(h *Host) *Flock {
	f := &Flock{host: h, released: make(chan string, 16)}
	h.Handle(Contains("flock -w 5 9"), func(ctx context.Context, cmd string, _ io.Reader) ([]byte, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		live := f.run != "" && time.Now().Before(f.expires)
		w := writeLine.FindStringSubmatch(cmd)
		switch {
		case acquireLine.MatchString(cmd) && w != nil:
			m := acquireLine.FindStringSubmatch(cmd)
			if live && f.run != m[1] && f.run != m[2] {
				return []byte(fmt.Sprintf("locked %s\nlease %s %d\n", f.holder, f.run, f.expires.Unix())), Exit(75, "")
			}
			secs, _ := strconv.Atoi(w[2])
			f.run, f.holder, f.expires = w[1], w[3][1:len(w[3])-1], time.Now().Add(time.Duration(secs)*time.Second)
			if err := f.host.MkdirAll(ctx, path.Dir(w[4]), 0o700); err != nil {
				return nil, err
			}
			f.host.PutFile(w[4], []byte(fmt.Sprintf("run %s\nexpires %d\nholder %s\n", f.run, f.expires.Unix(), f.holder)), 0o644)
			now := time.Now()
			return []byte(fmt.Sprintf("clock %d.%09d\nuid 0\nend\n", now.Unix(), now.Nanosecond())), nil
		case w != nil:
			if f.run != w[1] {
				return []byte("lost " + f.holder + "\n"), Exit(75, "")
			}
			secs, _ := strconv.Atoi(w[2])
			f.expires = time.Now().Add(time.Duration(secs) * time.Second)
			return []byte("renewed\n"), nil
		default:
			if m := runLine.FindStringSubmatch(cmd); m != nil && f.run == m[1] {
				f.released <- f.holder
				f.run, f.holder = "", ""
			}
			return nil, nil
		}
	})
	return f
}

// Released returns the holder whose lock is let go next, or "" when ctx
// ends first.
func (f *Flock) Released(ctx context.Context) string {
	select {
	case holder := <-f.released:
		return holder
	case <-ctx.Done():
		return ""
	}
}

// Hold makes another run hold the lock, with a lease of an hour; "" lets
// it go.
func (f *Flock) Hold(holder string) { f.HoldFor(holder, "another-run", time.Hour) }

// HoldFor makes run (holder) hold the lock for lease: a lease in the past
// has run out.
func (f *Flock) HoldFor(holder, run string, lease time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.holder, f.run, f.expires = holder, run, time.Now().Add(lease)
	if holder == "" {
		f.run = ""
	}
}

// HeldBy is who holds the lock, "" for nobody.
func (f *Flock) HeldBy() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.holder
}

// Until is when the lease of the run that holds the lock runs out.
func (f *Flock) Until() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.expires
}
