// Package hosts holds a run's connections to the inventory's hosts: it
// dials them (SSH from the inventory's settings, every command bounded and
// traced), runs a function on each with a concurrency limit, and names
// every host that failed. It owns the connections and per-host errors; it
// must not import plan, ops, gather or the executor.
package hosts

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/progress"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// Connector opens a transport to one host of the inventory.
type Connector func(ctx context.Context, h config.Host) (remote.Transport, error)

// SSHConnector builds remote configurations from the inventory's ssh settings.
func SSHConnector(c *config.Cluster, base remote.Config) Connector {
	return func(ctx context.Context, h config.Host) (remote.Transport, error) {
		cfg := base
		cfg.Host = h.Name
		cfg.Address = h.Address
		if h.SSH.Host != "" {
			cfg.Address = h.SSH.Host
		}
		// Unset fields stay empty so that ~/.ssh/config applies before the defaults.
		cfg.Port = c.Spec.SSH.Port
		if h.SSH.Port != 0 {
			cfg.Port = h.SSH.Port
		}
		cfg.User = c.Spec.SSH.User
		if h.SSH.User != "" {
			cfg.User = h.SSH.User
		}
		cfg.DefaultUser = config.DefaultSSHUser
		if c.Spec.SSH.IdentityFile != "" {
			cfg.IdentityFiles = append([]string{c.ResolvePath(c.Spec.SSH.IdentityFile)}, cfg.IdentityFiles...)
		}
		if cfg.KnownHostsFile == "" && c.Spec.SSH.KnownHostsFile != "" {
			cfg.KnownHostsFile = c.ResolvePath(c.Spec.SSH.KnownHostsFile)
		}
		cfg.ProxyJump = c.Spec.SSH.ProxyJump
		if h.SSH.ProxyJump != "" {
			cfg.ProxyJump = h.SSH.ProxyJump
		}
		return remote.Dial(ctx, cfg)
	}
}

// Hosts are the open transports of a run, by host name, in inventory order.
type Hosts struct {
	Order []config.Host
	T     map[string]remote.Transport
}

// Close closes every transport.
func (hs *Hosts) Close() {
	for _, t := range hs.T {
		_ = t.Close()
	}
}

// Connect opens one transport per host, concurrently. If any host fails, the
// others are closed and the error lists every failure.
func Connect(ctx context.Context, hosts []config.Host, connect Connector, concurrency int, log *progress.Log) (*Hosts, error) {
	hs := &Hosts{Order: hosts, T: map[string]remote.Transport{}}
	var mu sync.Mutex
	err := ForEach(ctx, hosts, concurrency, func(ctx context.Context, h config.Host) error {
		t, err := connect(ctx, h)
		if err != nil {
			return err
		}
		mu.Lock()
		hs.T[h.Name] = t
		mu.Unlock()
		log.Host(h.Name, "connected")
		return nil
	})
	if err != nil {
		hs.Close()
		return nil, err
	}
	return hs, nil
}

// ConnectAny opens one transport per host, concurrently, and keeps those
// that work: the others are returned with the reason, for commands that can
// do without a host (status, removing a dead member).
func ConnectAny(ctx context.Context, hosts []config.Host, connect Connector, concurrency int, log *progress.Log) (*Hosts, map[string]error) {
	hs := &Hosts{Order: hosts, T: map[string]remote.Transport{}}
	unreachable := map[string]error{}
	var mu sync.Mutex
	_ = ForEach(ctx, hosts, concurrency, func(ctx context.Context, h config.Host) error {
		t, err := connect(ctx, h)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			unreachable[h.Name] = err
			return err
		}
		hs.T[h.Name] = t
		log.Host(h.Name, "connected")
		return nil
	})
	return hs, unreachable
}

// HostError is a failure on one host.
type HostError struct {
	Host string
	Err  error
}

func (e *HostError) Error() string { return e.Host + ": " + e.Err.Error() }
func (e *HostError) Unwrap() error { return e.Err }

// HostsError aggregates the failures of several hosts.
type HostsError struct {
	What   string
	Errors []*HostError
}

func (e *HostsError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s failed on %d host(s):", e.What, len(e.Errors))
	for _, he := range e.Errors {
		fmt.Fprintf(&b, "\n  - %s: %s", he.Host, strings.ReplaceAll(he.Err.Error(), "\n", "\n    "))
	}
	return b.String()
}

// Unwrap lets errors.Is see every host's error.
func (e *HostsError) Unwrap() []error {
	out := make([]error, len(e.Errors))
	for i, he := range e.Errors {
		out[i] = he
	}
	return out
}

// ForEach runs fn for every host with at most concurrency at once and
// returns a *HostsError naming every host that failed.
func ForEach(ctx context.Context, hosts []config.Host, concurrency int, fn func(context.Context, config.Host) error) error {
	if concurrency <= 0 {
		concurrency = len(hosts)
	}
	sem := make(chan struct{}, max(concurrency, 1))
	var mu sync.Mutex
	var failed []*HostError
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				mu.Lock()
				failed = append(failed, &HostError{h.Name, ctx.Err()})
				mu.Unlock()
				return
			}
			defer func() { <-sem }()
			if err := fn(ctx, h); err != nil {
				mu.Lock()
				failed = append(failed, &HostError{h.Name, err})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(failed) == 0 {
		return nil
	}
	sort.Slice(failed, func(i, j int) bool { return failed[i].Host < failed[j].Host })
	return &HostsError{What: "step", Errors: failed}
}

// Named sets what failed in a *HostsError ("reading the hosts").
func Named(err error, what string) error {
	var he *HostsError
	if errors.As(err, &he) {
		he.What = what
	}
	return err
}

// TunnelDialer dials a member directly and, if that fails, through the SSH
// connection of the host whose address it is; the way that worked is kept.
func TunnelDialer(hs *Hosts) etcdclient.Dialer {
	byAddr := map[string]remote.Transport{}
	for _, h := range hs.Order {
		if t := hs.T[h.Name]; t != nil {
			byAddr[net.ParseIP(h.Address).String()] = t
		}
	}
	var mu sync.Mutex
	viaSSH := map[string]bool{}
	direct := &net.Dialer{Timeout: 2 * time.Second}
	return func(ctx context.Context, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		t := byAddr[net.ParseIP(host).String()]
		mu.Lock()
		useSSH := viaSSH[addr]
		mu.Unlock()
		if !useSSH || t == nil {
			conn, derr := direct.DialContext(ctx, "tcp", addr)
			if derr == nil || t == nil {
				return conn, derr
			}
		}
		conn, err := t.Dial(ctx, "tcp", addr)
		if err == nil {
			mu.Lock()
			viaSSH[addr] = true
			mu.Unlock()
		}
		return conn, err
	}
}
