//go:build linux

package facts_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// recordingTransport keeps the processes Start returns, so that a test can
// cut their input as a lost connection would.
type recordingTransport struct {
	remote.Transport
	mu    sync.Mutex
	procs []*remote.Process
}

func (r *recordingTransport) Start(ctx context.Context, cmd string) (*remote.Process, error) {
	p, err := r.Transport.Start(ctx, cmd)
	if p != nil {
		r.mu.Lock()
		r.procs = append(r.procs, p)
		r.mu.Unlock()
	}
	return p, err
}

func lockRequest(t *testing.T) (facts.Request, string) {
	root := t.TempDir()
	req := baseRequest(root)
	req.StateDir = filepath.Join(root, "state")
	req.ClientPort = freePort(t)
	return req, req.StateDir
}

func readLockFile(t *testing.T, stateDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stateDir, "lock"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// transports are the ways to reach this machine: the local transport, and
// the SSH transport (etcdadm's way to real hosts) through an in-process
// SSH server.
func transports(t *testing.T) map[string]func(t *testing.T) remote.Transport {
	s := startSSHServer(t)
	return map[string]func(t *testing.T) remote.Transport{
		"local": func(*testing.T) remote.Transport { return remote.NewLocal("local", false) },
		"ssh":   s.dial,
	}
}

func TestLockExcludesOtherRuns(t *testing.T) {
	for name, dial := range transports(t) {
		t.Run(name, func(t *testing.T) { testLockExcludesOtherRuns(t, dial(t)) })
	}
}

func testLockExcludesOtherRuns(t *testing.T, tr remote.Transport) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, stateDir := lockRequest(t)
	// The holder goes through the shell quoted.
	holderA := "run A: it's `id` $HOME; exit 3"

	hA, lockA, err := facts.Gather(ctx, tr, req, holderA)
	if err != nil {
		if strings.Contains(err.Error(), "non-nil Cancel") {
			t.Fatalf("the local transport cannot start a command: %v", errors.Unwrap(errors.Unwrap(err)))
		}
		t.Fatal(err)
	}
	defer lockA.Release()
	if lockA == nil || hA == nil || hA.Name != tr.Host() || hA.UID != os.Geteuid() {
		t.Fatalf("Gather with a holder: host %+v, lock %v", hA, lockA)
	}
	fi, err := os.Stat(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode %v, want 0700", fi.Mode().Perm())
	}
	if got := readLockFile(t, stateDir); !strings.HasPrefix(got, "run ") || !strings.Contains(got, "\nexpires ") || !strings.HasSuffix(got, "\nholder "+holderA+"\n") {
		t.Errorf("lock file holds %q", got)
	}
	held := readLockFile(t, stateDir)

	// Another run is refused, and told who holds the host.
	hB, lockB, err := facts.Gather(ctx, tr, req, "run B")
	if !errors.Is(err, facts.ErrLocked) {
		t.Fatalf("second Gather: err %v, want ErrLocked", err)
	}
	if lockB != nil {
		t.Errorf("a refused Gather returned a lock")
		lockB.Release()
	}
	if hB == nil || hB.LockHolder != holderA || hB.Name != tr.Host() || hB.LockRun == "" || time.Until(hB.LockUntil) < 30*time.Second {
		t.Errorf("refused Gather: host %+v, want LockHolder %q and its lease", hB, holderA)
	}
	if got := readLockFile(t, stateDir); got != held {
		t.Errorf("the refused run overwrote the lock file: %q", got)
	}

	// Reading without the lock works while it is held.
	if h, l, err := facts.Gather(ctx, tr, req, ""); err != nil || l != nil || h == nil {
		t.Errorf("read-only Gather while locked: %+v, %v, %v", h, l, err)
	}

	lockA.Release()
	lockA.Release() // twice is harmless
	(*facts.Lock)(nil).Release()

	_, lockC, err := facts.Gather(ctx, tr, req, "run C")
	if err != nil {
		t.Fatalf("Gather after Release: %v", err)
	}
	if got := readLockFile(t, stateDir); !strings.HasSuffix(got, "\nholder run C\n") {
		t.Errorf("lock file holds %q", got)
	}
	lockC.Release()

	_, lockD, err := facts.Gather(ctx, tr, req, "run D")
	if err != nil {
		t.Fatalf("Gather after the second Release: %v", err)
	}
	lockD.Release()
}

func TestLockOneWinnerAmongConcurrentRuns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tr := startSSHServer(t).dial(t)
	req, _ := lockRequest(t)
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	locks := make([]*facts.Lock, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, locks[i], errs[i] = facts.Gather(ctx, tr, req, "run "+string(rune('A'+i)))
		}()
	}
	wg.Wait()
	won := 0
	for i := range n {
		switch {
		case errs[i] == nil:
			won++
			locks[i].Release()
		case !errors.Is(errs[i], facts.ErrLocked):
			t.Errorf("run %d: %v", i, errs[i])
		}
	}
	if won != 1 {
		t.Errorf("%d runs took the lock, want 1 (errors %v)", won, errs)
	}
}

// A run whose connection drops keeps the host: its lease is a file, which
// no connection holds; the run renews it over its reopened connection,
// and another run is refused meanwhile.
func TestLockSurvivesALostConnection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s := startSSHServer(t)
	req, stateDir := lockRequest(t)
	req.Lease = 2 * time.Second
	_, lockA, err := facts.Gather(ctx, s.dial(t), req, "run A")
	if err != nil {
		t.Fatal(err)
	}
	defer lockA.Release()
	s.dropConnections()
	if _, _, err := facts.Gather(ctx, s.dial(t), req, "run B"); !errors.Is(err, facts.ErrLocked) {
		t.Fatalf("after A's connection dropped: %v, want ErrLocked", err)
	}
	before := readLockFile(t, stateDir)
	time.Sleep(1500 * time.Millisecond)
	if err := lockA.Held(); err != nil || readLockFile(t, stateDir) == before {
		t.Errorf("A's lease after its connection came back: %v, lock file %q (was %q)", err, readLockFile(t, stateDir), before)
	}
	lockA.Release()
	_, lockC, err := facts.Gather(ctx, s.dial(t), req, "run C")
	if err != nil {
		t.Fatalf("after A let go: %v", err)
	}
	lockC.Release()
}

// A run that ended without letting go holds the host until its lease runs
// out, or until a run allowed to take it over (one of the same machine
// that knows it ended) comes; an etcdadm from before leases, holding flock
// for its whole run, is refused after a few seconds.
func TestLockOfARunThatEnded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr := remote.NewLocal("local", false)
	req, stateDir := lockRequest(t)
	lockFile := filepath.Join(stateDir, "lock")
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, lockFile, []byte(fmt.Sprintf("run dead\nexpires %d\nholder killed run\n", time.Now().Add(time.Hour).Unix())), 0o644)
	h, _, err := facts.Gather(ctx, tr, req, "run B")
	if !errors.Is(err, facts.ErrLocked) || h.LockHolder != "killed run" || h.LockRun != "dead" {
		t.Fatalf("a live lease: %+v, %v", h, err)
	}
	req.Takeover = "dead"
	_, lockB, err := facts.Gather(ctx, tr, req, "run B")
	if err != nil {
		t.Fatalf("taking over: %v", err)
	}
	lockB.Release()
	req.Takeover = ""
	writeFile(t, lockFile, []byte(fmt.Sprintf("run dead\nexpires %d\nholder killed run\n", time.Now().Add(-time.Second).Unix())), 0o644)
	_, lockC, err := facts.Gather(ctx, tr, req, "run C")
	if err != nil {
		t.Fatalf("a lease that ran out: %v", err)
	}
	lockC.Release()

	writeFile(t, lockFile, []byte("old etcdadm run\n"), 0o644)
	old := exec.Command("flock", lockFile, "sleep", "20")
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = old.Process.Kill(); _ = old.Wait() }()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	h, _, err = facts.Gather(ctx, tr, req, "run D")
	if !errors.Is(err, facts.ErrLocked) || h.LockHolder != "old etcdadm run" || time.Since(start) > 10*time.Second {
		t.Errorf("an old run's flock: %+v, %v after %s", h, err, time.Since(start))
	}
}

// Without a holder nothing is written: no state directory, no lock file.
func TestReadOnlyGatherWritesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr := &recordingTransport{Transport: remote.NewLocal("local", false)}
	fresh := t.TempDir()
	for _, stateDir := range []string{fresh, filepath.Join(fresh, "state")} {
		req := baseRequest(fresh)
		req.StateDir = stateDir
		req.ClientPort = freePort(t)
		h, lock, err := facts.Gather(ctx, tr, req, "")
		if err != nil || lock != nil || h == nil {
			t.Fatalf("read-only Gather: %+v, %v, %v", h, lock, err)
		}
		if es := entries(t, fresh); len(es) != 0 {
			t.Errorf("state dir %s: a read-only Gather created %v", stateDir, es)
		}
	}
	if len(tr.procs) != 0 {
		t.Errorf("a read-only Gather started a long-lived command")
	}
}

// A state directory that cannot be made is an error, not another run's lock.
func TestLockStateDirUnusable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := lockRequest(t)
	file := filepath.Join(t.TempDir(), "a-file")
	writeFile(t, file, nil, 0o600)
	req.StateDir = filepath.Join(file, "state")
	h, lock, err := facts.Gather(ctx, startSSHServer(t).dial(t), req, "run A")
	if err == nil || errors.Is(err, facts.ErrLocked) || lock != nil || h != nil {
		t.Errorf("Gather: %+v, %v, %v; want an error other than ErrLocked", h, lock, err)
	}
}

// Without flock on the host, a locking run is told what is missing, not
// that another run holds the host.
func TestLockWithoutFlockIsNotLocked(t *testing.T) {
	bin := t.TempDir()
	for _, name := range []string{"sh", "mkdir", "chmod", "tr", "cat", "date", "id", "ls", "wc", "head",
		"base64", "stat", "sha256sum", "cut", "sed", "grep", "sort", "ss", "systemctl"} {
		p, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		if err := os.Symlink(p, filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	// The server runs commands with this process's PATH.
	tr := startSSHServer(t).dial(t)
	t.Setenv("PATH", bin)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := lockRequest(t)
	h, lock, err := facts.Gather(ctx, tr, req, "run A")
	if lock != nil {
		lock.Release()
		t.Skip("flock was found anyway")
	}
	if errors.Is(err, facts.ErrLocked) {
		t.Errorf("without flock on the host, Gather says %v (holder %q): no other run holds it", err, h.LockHolder)
	}
	if err == nil {
		t.Errorf("Gather without flock succeeded without a lock")
	}
}

// The local transport starts long-running commands.
func TestLocalTransportStart(t *testing.T) {
	p, err := remote.NewLocal("local", false).Start(context.Background(), "echo started; exec cat >/dev/null")
	if err != nil {
		t.Fatalf("the local transport's Start fails: %v", err)
	}
	line := make([]byte, len("started\n"))
	if _, err := io.ReadFull(p.Stdout, line); err != nil || string(line) != "started\n" {
		t.Errorf("read %q, %v", line, err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
