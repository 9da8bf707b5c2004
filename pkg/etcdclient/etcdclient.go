// Package etcdclient talks to a cluster's members over mTLS with the
// healthcheck-client certificate: health, status and membership. Members are
// dialled directly or through a caller's dialer (an SSH connection to the
// member's host, when the operator cannot reach port 2379).
package etcdclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
)

// Dialer opens a TCP connection to addr (host:port).
type Dialer func(ctx context.Context, addr string) (net.Conn, error)

// Member is one member as the inventory knows it.
type Member struct {
	Name string
	// ClientURL is the member's advertised client URL, https://addr:2379.
	ClientURL string
}

// Client reaches members with one TLS identity and one dialer.
type Client struct {
	tls  *tls.Config
	dial Dialer
}

// New returns a client; dial nil means direct TCP connections.
func New(tlsConfig *tls.Config, dial Dialer) *Client {
	if dial == nil {
		d := &net.Dialer{Timeout: 5 * time.Second}
		dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	return &Client{tls: tlsConfig, dial: dial}
}

// TLSConfig is a client configuration trusting caPEM and presenting the given pair.
func TLSConfig(caPEM, certPEM, keyPEM []byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no CA certificate in the etcd CA file")
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load the healthcheck-client certificate: %w", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// FromPKI authenticates as host's healthcheck client, from the operator's PKI.
func FromPKI(pki *certs.PKI, host string, dial Dialer) (*Client, error) {
	kp, ok := pki.Leaf(host, certs.EtcdHealthcheckClient)
	if !ok {
		return nil, fmt.Errorf("the PKI has no healthcheck-client certificate for %s", host)
	}
	tlsConfig, err := TLSConfig(pki.CA.CertPEM, kp.CertPEM, kp.KeyPEM)
	if err != nil {
		return nil, err
	}
	return New(tlsConfig, dial), nil
}

// Connect returns an etcd client for the given client URLs; the caller closes it.
func (c *Client) Connect(urls ...string) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   urls,
		TLS:         c.tls,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(c.dial)},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", urls, err)
	}
	return cli, nil
}

// MemberStatus is what one member says of itself.
type MemberStatus struct {
	Name      string `json:"name"`
	Endpoint  string `json:"endpoint"`
	ID        string `json:"id,omitempty"`
	Leader    bool   `json:"leader"`
	Learner   bool   `json:"learner"`
	Version   string `json:"version,omitempty"`
	DBSize    int64  `json:"dbSize"`
	RaftTerm  uint64 `json:"raftTerm"`
	RaftIndex uint64 `json:"raftIndex"`
	Healthy   bool   `json:"healthy"`
	Error     string `json:"error,omitempty"`
	Took      string `json:"took,omitempty"`
}

// Status asks every member, concurrently, for its status and health. A
// member is healthy when it answers a linearizable read, which needs quorum,
// as `etcdctl endpoint health` checks.
func (c *Client) Status(ctx context.Context, members []Member, timeout time.Duration) []MemberStatus {
	out := make([]MemberStatus, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = c.memberStatus(ctx, m, timeout)
		}()
	}
	wg.Wait()
	return out
}

func (c *Client) memberStatus(ctx context.Context, m Member, timeout time.Duration) MemberStatus {
	st := MemberStatus{Name: m.Name, Endpoint: m.ClientURL}
	cli, err := c.Connect(m.ClientURL)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	defer cli.Close()
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := cli.Status(sctx, m.ClientURL)
	if err != nil {
		st.Error = describe(err)
		return st
	}
	st.ID = fmt.Sprintf("%x", resp.Header.MemberId)
	st.Leader = resp.Leader == resp.Header.MemberId
	st.Learner = resp.IsLearner
	st.Version = resp.Version
	st.DBSize = resp.DbSize
	st.RaftTerm = resp.RaftTerm
	st.RaftIndex = resp.RaftIndex
	if len(resp.Errors) > 0 {
		st.Error = fmt.Sprint(resp.Errors)
		return st
	}
	gctx, gcancel := context.WithTimeout(ctx, timeout)
	defer gcancel()
	_, err = cli.Get(gctx, "health")
	// A cluster with auth enabled refuses the read but has answered it.
	if err == nil || errors.Is(err, rpctypes.ErrPermissionDenied) {
		st.Healthy = true
	} else {
		st.Error = describe(err)
	}
	st.Took = time.Since(start).Round(time.Millisecond).String()
	return st
}

func describe(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer in time (member down, unreachable, or no quorum)"
	}
	return err.Error()
}

// WaitHealthy polls until every member is healthy, ctx ends, or timeout
// passes; the error lists the members that are not healthy and why.
func (c *Client) WaitHealthy(ctx context.Context, members []Member, timeout time.Duration, progress func([]MemberStatus)) ([]MemberStatus, error) {
	deadline := time.Now().Add(timeout)
	for {
		sts := c.Status(ctx, members, 5*time.Second)
		if progress != nil {
			progress(sts)
		}
		var bad []string
		for _, s := range sts {
			if !s.Healthy {
				bad = append(bad, fmt.Sprintf("%s (%s): %s", s.Name, s.Endpoint, s.Error))
			}
		}
		if len(bad) == 0 {
			return sts, nil
		}
		sort.Strings(bad)
		if time.Now().After(deadline) || ctx.Err() != nil {
			return sts, fmt.Errorf("members not healthy after %s: %v", timeout, bad)
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// HostPort returns the host:port of a client URL.
func HostPort(clientURL string) (string, error) {
	u, err := url.Parse(clientURL)
	if err != nil {
		return "", err
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), strconv.Itoa(2379)), nil
	}
	return u.Host, nil
}
