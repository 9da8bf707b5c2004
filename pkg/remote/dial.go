package remote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// sshConn is one authenticated connection to the target, possibly through
// jump hosts, with its keep-alive.
type sshConn struct {
	client *ssh.Client
	hops   []*ssh.Client // jump host connections, first to last
	done   chan struct{} // closed when the connection is over
	closed atomic.Bool   // set by close, before done is closed
	once   sync.Once
}

func (c *sshConn) alive() bool {
	if c.closed.Load() {
		return false
	}
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

func (c *sshConn) close() {
	c.closed.Store(true)
	c.once.Do(func() {
		_ = c.client.Close()
		closeClients(c.hops)
	})
}

func closeClients(cs []*ssh.Client) {
	for i := len(cs) - 1; i >= 0; i-- {
		_ = cs[i].Close()
	}
}

// connector opens connections along a route.
type connector struct {
	cfg  Config
	rt   route
	home string
	log  *slog.Logger
}

// connect opens a connection, retrying with exponential backoff while the
// failures are those of the network.
func (d *connector) connect(ctx context.Context) (*sshConn, error) {
	wait := d.cfg.RetryBackoff
	for attempt := 1; ; attempt++ {
		d.log.Debug("connecting", "attempt", attempt, "target", d.rt.Target.String(), "via", d.rt.via())
		c, err := d.connectOnce(ctx)
		if err == nil {
			d.log.Debug("connected", "target", d.rt.Target.String(), "via", d.rt.via())
			return c, nil
		}
		if attempt >= d.cfg.Attempts || !retryable(err) || ctx.Err() != nil {
			if attempt > 1 {
				err = fmt.Errorf("%w (gave up after %d attempts)", err, attempt)
			}
			return nil, d.wrap(err)
		}
		d.log.Warn("connection failed, retrying", "attempt", attempt, "wait", wait, "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, d.wrap(fmt.Errorf("%w (after: %v)", ctx.Err(), err))
		}
		wait = min(wait*2, maxRetryBackoff)
	}
}

func (d *connector) wrap(err error) error {
	if len(d.rt.Jumps) == 0 {
		return fmt.Errorf("connect to %s (%s): %w", d.cfg.Host, d.rt.Target, err)
	}
	return fmt.Errorf("connect to %s (%s via %s): %w", d.cfg.Host, d.rt.Target, d.rt.via(), err)
}

// connectOnce authenticates to each jump host in turn, each reached through
// the previous one, then to the target.
func (d *connector) connectOnce(ctx context.Context) (*sshConn, error) {
	auth := newAuthenticator(ctx, d.cfg, d.home, d.rt.AgentSocket, d.log)
	defer auth.close()

	var hops []*ssh.Client
	var prev *ssh.Client
	all := append(append([]endpoint(nil), d.rt.Jumps...), d.rt.Target)
	for i, ep := range all {
		client, err := d.handshake(ctx, auth, ep, prev)
		if err != nil {
			closeClients(hops)
			if i < len(all)-1 {
				return nil, fmt.Errorf("jump host %s (%s): %w", ep.Alias, ep, err)
			}
			return nil, err
		}
		if i < len(all)-1 {
			hops = append(hops, client)
		}
		prev = client
	}
	c := &sshConn{client: prev, hops: hops, done: make(chan struct{})}
	go func() {
		_ = c.client.Wait()
		close(c.done)
		closeClients(c.hops)
	}()
	if d.cfg.KeepAliveInterval > 0 {
		go keepAlive(c, d.cfg.KeepAliveInterval, d.log)
	}
	return c, nil
}

// handshake opens a TCP connection to ep (from the previous hop when there is
// one), verifies ep's host key and authenticates. The TCP connection and the
// handshake each get ConnectTimeout; the time spent asking the user for a
// passphrase or a password does not count.
func (d *connector) handshake(ctx context.Context, auth *authenticator, ep endpoint, prev *ssh.Client) (*ssh.Client, error) {
	hk, err := newHostKeyCheck(ep, d.cfg.AcceptNewHostKeys, d.log)
	if err != nil {
		return nil, err
	}
	methods, offered, err := auth.methods(ep)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAuth, err)
	}

	dctx, cancel := context.WithTimeout(ctx, d.cfg.ConnectTimeout)
	var raw net.Conn
	switch {
	case prev != nil:
		raw, err = prev.DialContext(dctx, "tcp", ep.addr())
	case d.cfg.netDial != nil:
		raw, err = d.cfg.netDial(dctx, "tcp", ep.addr())
	default:
		var nd net.Dialer
		raw, err = nd.DialContext(dctx, "tcp", ep.addr())
	}
	timedOut := dctx.Err() != nil
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: dial %s: %w", ctx.Err(), ep.addr(), err)
		}
		if timedOut && !errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
		return nil, fmt.Errorf("dial %s: %w", ep.addr(), err)
	}
	if prev == nil {
		raw = quickAck(raw)
	}

	config := &ssh.ClientConfig{
		User:              ep.User,
		Auth:              methods,
		HostKeyCallback:   hk.callback,
		HostKeyAlgorithms: hk.algorithms,
	}
	// Connections through a jump host have no deadlines: closing is the
	// only way to bound the handshake.
	timer := newPausableTimer(d.cfg.ConnectTimeout, func() { raw.Close() })
	auth.pause = timer.pause
	stopCancel := context.AfterFunc(ctx, func() { raw.Close() })
	conn, chans, reqs, err := ssh.NewClientConn(raw, ep.addr(), config)
	cancelled := !stopCancel()
	expired := !timer.stop()
	auth.pause = nil
	if err == nil && (cancelled || expired) {
		conn.Close()
		err = net.ErrClosed
	}
	if err != nil {
		switch {
		case hk.err != nil:
			return nil, hk.err
		case cancelled:
			return nil, fmt.Errorf("%w: ssh handshake with %s", ctx.Err(), ep.addr())
		case expired:
			return nil, fmt.Errorf("ssh handshake with %s: no answer within %s: %w", ep.addr(), d.cfg.ConnectTimeout, context.DeadlineExceeded)
		case errors.Is(err, ErrAuth):
			auth.rejected(ep)
			return nil, fmt.Errorf("authenticate as %s: %w", ep.User, unwrapHandshake(err))
		case hk.verified && isAuthFailure(err):
			auth.rejected(ep)
			if strings.Contains(strings.ToLower(err.Error()), "too many authentication failures") {
				return nil, fmt.Errorf("%s closed the connection after too many authentication failures (offered: %s); "+
					"name the right key as an identity file, and set IdentitiesOnly if the agent holds many keys: %w", ep, offered, ErrAuth)
			}
			return nil, fmt.Errorf("%s rejected every credential offered (%s): %w", ep, offered, ErrAuth)
		}
		return nil, fmt.Errorf("ssh handshake with %s: %w", ep.addr(), err)
	}
	return ssh.NewClient(conn, chans, reqs), nil
}

// pausableTimer calls f once d of unpaused time has passed, unless stopped.
type pausableTimer struct {
	mu      sync.Mutex
	t       *time.Timer
	left    time.Duration
	since   time.Time
	paused  int
	fired   bool
	stopped bool
}

func newPausableTimer(d time.Duration, f func()) *pausableTimer {
	p := &pausableTimer{left: d, since: time.Now()}
	p.t = time.AfterFunc(d, func() {
		p.mu.Lock()
		if p.stopped || p.paused > 0 {
			p.mu.Unlock()
			return
		}
		p.fired = true
		p.mu.Unlock()
		f()
	})
	return p
}

// pause suspends the countdown until the returned function is called.
func (p *pausableTimer) pause() (resume func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused++; p.paused == 1 {
		if p.t.Stop() {
			p.left -= time.Since(p.since)
		} else {
			p.left = 0 // it was firing: fire on resume
		}
	}
	return sync.OnceFunc(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.paused--; p.paused == 0 && !p.stopped && !p.fired {
			p.since = time.Now()
			p.t.Reset(max(p.left, 0))
		}
	})
}

// stop cancels the timer and reports whether it had not fired.
func (p *pausableTimer) stop() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	p.t.Stop()
	return !p.fired
}

// unwrapHandshake drops the ssh package's prefix from our own errors.
func unwrapHandshake(err error) error {
	if s := err.Error(); strings.HasPrefix(s, "ssh: handshake failed: ") {
		if u := errors.Unwrap(err); u != nil {
			return u
		}
	}
	return err
}

// keepAlive probes the connection periodically and closes it when three
// probes in a row go unanswered, so that a dead peer fails fast instead of
// hanging a command.
func keepAlive(c *sshConn, interval time.Duration, log *slog.Logger) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	missed := 0
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
		}
		answer := make(chan error, 1)
		go func() {
			_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
			answer <- err
		}()
		select {
		case <-c.done:
			return
		case err := <-answer:
			if err != nil {
				log.Warn("keep-alive failed, closing the connection", "err", err)
				c.close()
				return
			}
			missed = 0
		case <-time.After(interval):
			if missed++; missed >= 3 {
				log.Warn("no answer to three keep-alives, closing the connection")
				c.close()
				return
			}
		}
	}
}
