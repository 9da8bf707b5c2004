// Package fakehost is a test double for remote.Transport: an in-memory host
// whose files behave as the real transports' do, and whose commands are
// answered by handlers the test registers, so that code driving hosts is
// tested without root and without a machine.
//
// It is strict rather than permissive: a command that no handler answers
// fails, naming the command, and is kept for Unhandled; every command is
// recorded in order (Calls); a host that was closed or disconnected fails
// every call.
//
// Only tests import it (_test.go files and test/...); product code must not.
package fakehost

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// Errors a Host returns, for errors.Is.
var (
	// ErrUnhandled: no handler answers the command.
	ErrUnhandled = errors.New("fakehost: no handler for the command")
	// ErrDisconnected: the connection to the host was lost (Disconnect).
	ErrDisconnected = errors.New("connection lost")
	// ErrClosed: the Host was closed.
	ErrClosed = errors.New("transport closed")
)

var errNoDialer = errors.New("the fake host dials nothing (see SetDialer)")

// Host is an in-memory remote.Transport: a file system and a command recorder.
// It is safe for concurrent use, and handlers may call its methods.
type Host struct {
	name string
	// stamp names the directory of this connection's backups.
	stamp string

	// life ends with Disconnect or Close; commands running end with it.
	life    context.Context
	endLife context.CancelCauseFunc

	mu        sync.Mutex
	closed    bool
	nodes     map[string]*node
	runs      []route[Handler]
	starts    []route[StartHandler]
	calls     []Call
	unhandled []string
	procs     map[*process]struct{}
	latency   time.Duration
	dialer    func(ctx context.Context, network, addr string) (net.Conn, error)
}

var _ remote.Transport = (*Host)(nil)

// New returns a connected host named name, with only its root directory.
func New(name string) *Host {
	now := time.Now()
	life, end := context.WithCancelCause(context.Background())
	return &Host{
		name:    name,
		stamp:   now.UTC().Format("20060102T150405Z"),
		life:    life,
		endLife: end,
		nodes:   map[string]*node{"/": {mode: fs.ModeDir | 0o755, modTime: now}},
		procs:   map[*process]struct{}{},
	}
}

// Host returns the name given to New.
func (h *Host) Host() string { return h.name }

// SetLatency makes every later call wait d before it does anything, as a
// round trip to a real host would.
func (h *Host) SetLatency(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.latency = d
}

// SetDialer makes Dial call dial, to reach a server the test runs.
func (h *Host) SetDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dialer = dial
}

// Dial calls the dialer given to SetDialer; without one it fails.
func (h *Host) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	err := h.enter(ctx)
	h.mu.Lock()
	dial := h.dialer
	h.mu.Unlock()
	var conn net.Conn
	switch {
	case err != nil:
	case dial == nil:
		err = errNoDialer
	default:
		conn, err = dial(ctx, network, addr)
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", addr, h.name, err)
	}
	return conn, nil
}

// Disconnect loses the connection for good: every later call fails with
// ErrDisconnected, commands running have their context cancelled, and
// started processes see their input end while their Wait reports the lost
// connection.
func (h *Host) Disconnect() { h.shutdown(ErrDisconnected, false) }

// Close ends the connection as Disconnect does; every later call fails with
// ErrClosed.
func (h *Host) Close() error {
	h.shutdown(ErrClosed, true)
	return nil
}

func (h *Host) shutdown(cause error, closing bool) {
	h.mu.Lock()
	if closing {
		h.closed = true
	}
	h.endLife(cause)
	procs := slices.Collect(maps.Keys(h.procs))
	h.mu.Unlock()
	for _, p := range procs {
		p.end(context.Cause(h.life))
	}
}

// down returns why the host cannot be used, nil when it can. h.mu is held.
func (h *Host) down() error {
	if h.closed {
		return ErrClosed
	}
	if h.life.Err() != nil {
		return context.Cause(h.life)
	}
	return nil
}

// enter begins a call: it waits the latency, and fails when the host is
// down or ctx has ended.
func (h *Host) enter(ctx context.Context) error {
	h.mu.Lock()
	d, err := h.latency, h.down()
	h.mu.Unlock()
	if err != nil {
		return err
	}
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		case <-h.life.Done():
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.down()
		}
	}
	return ctx.Err()
}
