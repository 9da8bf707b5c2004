package fakehost

import (
	"context"
	"fmt"
	"io"
	"path"
	"regexp"
	"sync"
	"time"
)

// Flock plays, on a fake host, the shell a run holds open to lock the host
// (flock on the lock file of etcdadm's state directory, see facts.Gather):
// it takes the lock unless another run holds it, prints the facts of a
// host without a member, and keeps the lock until its input ends.
type Flock struct {
	host     *Host
	mu       sync.Mutex
	holder   string
	released chan string
}

var holderLine = regexp.MustCompile(`printf '%s\\n' '([^']*)' > '([^']*)'`)

// HandleFlock answers h's locking scripts.
func HandleFlock(h *Host) *Flock {
	f := &Flock{host: h, released: make(chan string, 16)}
	f.host.HandleStart(Contains("flock -n 9"), func(ctx context.Context, cmd string, stdin io.Reader, stdout io.Writer) error {
		m := holderLine.FindStringSubmatch(cmd)
		if m == nil {
			return Exit(1, "no holder in the lock's script")
		}
		holder, lockFile := m[1], m[2]
		if err := f.host.MkdirAll(ctx, path.Dir(lockFile), 0o700); err != nil {
			return err
		}
		f.mu.Lock()
		if f.holder != "" {
			fmt.Fprintf(stdout, "locked %s\n", f.holder)
			f.mu.Unlock()
			return Exit(75, "")
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

// Hold makes another run hold the lock.
func (f *Flock) Hold(holder string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.holder = holder
}

// HeldBy is who holds the lock, "" for nobody.
func (f *Flock) HeldBy() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.holder
}
