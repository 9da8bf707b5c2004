package writer

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"
)

// tlsWatch keeps the last TLS failure on a client's connections: etcd's
// client waits for a ready connection, so a write blocked by a failing
// handshake only ever returns "context deadline exceeded".
type tlsWatch struct {
	mu  sync.Mutex
	err error
	at  time.Time
}

func (t *tlsWatch) record(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.err, t.at = err, time.Now()
}

// since returns the last TLS failure seen at or after at, if any.
func (t *tlsWatch) since(at time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err == nil || t.at.Before(at) {
		return nil
	}
	return t.err
}

// credentials are gRPC's TLS credentials for cfg, reporting failures to t.
func (t *tlsWatch) credentials(cfg *tls.Config) credentials.TransportCredentials {
	return watchedCreds{TransportCredentials: credentials.NewTLS(cfg), watch: t}
}

type watchedCreds struct {
	credentials.TransportCredentials
	watch *tlsWatch
}

func (c watchedCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	switch {
	case err == nil:
		return &watchedConn{Conn: conn, watch: c.watch}, info, nil
	case isTLSFailure(err.Error()):
		c.watch.record(err)
	case ctx.Err() == nil && !errors.Is(err, net.ErrClosed):
		// The peer's address and port would make every such message distinct.
		c.watch.record(errors.New("tls: connection lost during the handshake"))
	}
	return nil, nil, err
}

func (c watchedCreds) Clone() credentials.TransportCredentials {
	return watchedCreds{TransportCredentials: c.TransportCredentials.Clone(), watch: c.watch}
}

// watchedConn catches the server rejecting our certificate: under TLS 1.3 the
// client's handshake succeeds and the alert arrives with the first read, or is
// lost when the server's reset overtakes it.
type watchedConn struct {
	net.Conn
	watch *tlsWatch
	heard atomic.Bool
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.heard.Store(true)
	}
	if err != nil {
		c.failed(err)
	}
	return n, err
}

func (c *watchedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		c.failed(err)
	}
	return n, err
}

func (c *watchedConn) failed(err error) {
	switch {
	case isTLSFailure(err.Error()):
		c.watch.record(err)
	case !c.heard.Load() && !errors.Is(err, net.ErrClosed):
		// A gRPC server speaks first once TLS is up; silence then a close is a rejection.
		c.watch.record(errors.New("tls: server closed the connection right after the handshake (certificate rejected?)"))
	}
}
