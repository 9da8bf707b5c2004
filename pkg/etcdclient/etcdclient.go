// Package etcdclient talks to a cluster's members over mTLS with the
// healthcheck-client certificate: health, status, membership, alarms and
// maintenance (compaction, defragmentation, leadership). Members are
// dialled directly or through a caller's dialer (an SSH connection to the
// member's host, when the operator cannot reach port 2379).
//
// etcd 3.7's client connects lazily, so a dial timeout bounds nothing: every
// call here carries its own deadline.
//
// etcdclient owns the calls to etcd; it is a leaf and imports nothing of
// etcdadm's but the PKI.
package etcdclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
)

// DefaultCallTimeout bounds one RPC when the caller gives no timeout.
const DefaultCallTimeout = 3 * time.Second

// Dialer opens a TCP connection to addr (host:port).
type Dialer func(ctx context.Context, addr string) (net.Conn, error)

// Endpoint is one member as the inventory knows it.
type Endpoint struct {
	Name string
	// ClientURL is the member's advertised client URL, https://addr:2379.
	ClientURL string
}

// Client reaches members with one TLS identity and one dialer, keeping one
// connection per endpoint for its life.
type Client struct {
	tls  *tls.Config
	dial Dialer

	mu      sync.Mutex
	clients map[string]*clientv3.Client
}

// New returns a client; dial nil means direct TCP connections.
func New(tlsConfig *tls.Config, dial Dialer) *Client {
	if dial == nil {
		d := &net.Dialer{Timeout: 5 * time.Second}
		dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	return &Client{tls: tlsConfig, dial: dial, clients: map[string]*clientv3.Client{}}
}

// TLSConfig is a client configuration trusting caPEM (every certificate in
// it) and presenting the given pair.
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
	tlsConfig, err := TLSConfig(pki.Trust, kp.CertPEM, kp.KeyPEM)
	if err != nil {
		return nil, err
	}
	return New(tlsConfig, dial), nil
}

// Connect returns a new etcd client for the given client URLs; the caller
// closes it.
func (c *Client) Connect(urls ...string) (*clientv3.Client, error) {
	// Snapshots stream the whole database: windows of 4 MiB keep a link
	// busy where gRPC's 64 KiB start would wait for acks.
	return c.connect(4<<20, urls...)
}

// connect is Connect with gRPC's flow-control windows fixed to window
// bytes (at least 64 KiB), which also turns off their growth.
func (c *Client) connect(window int32, urls ...string) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   urls,
		TLS:         c.tls,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{
			grpc.WithContextDialer(c.dial),
			grpc.WithInitialWindowSize(window),
			grpc.WithInitialConnWindowSize(window),
			// A member that is starting is tried again within a second, not
			// after gRPC's back-off of up to two minutes.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
				MinConnectTimeout: 2 * time.Second,
			}),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", urls, err)
	}
	return cli, nil
}

// endpoint returns the kept connection to one client URL.
func (c *Client) endpoint(u string) (*clientv3.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cli, ok := c.clients[u]; ok {
		return cli, nil
	}
	cli, err := c.Connect(u)
	if err != nil {
		return nil, err
	}
	c.clients[u] = cli
	return cli, nil
}

// Close closes the kept connections.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for u, cli := range c.clients {
		_ = cli.Close()
		delete(c.clients, u)
	}
}

// MemberStatus is what one member says of itself.
type MemberStatus struct {
	Name     string `json:"name"`
	Endpoint string `json:"endpoint"`
	ID       string `json:"id,omitempty"`
	// MemberID and LeaderID are the raw IDs (0 when unknown); ClusterID
	// is the cluster the member belongs to, as it says.
	MemberID  uint64 `json:"-"`
	LeaderID  uint64 `json:"-"`
	ClusterID uint64 `json:"-"`
	Leader    bool   `json:"leader"`
	Learner   bool   `json:"learner"`
	Version   string `json:"version,omitempty"`
	DBSize    int64  `json:"dbSize"`
	// DBSizeInUse is the part of DBSize that holds data; the rest is free
	// pages that a defragment gives back.
	DBSizeInUse int64 `json:"dbSizeInUse"`
	// DBSizeQuota is the member's --quota-backend-bytes (etcd's default
	// when unset): a member whose DBSize reaches it raises NOSPACE.
	DBSizeQuota int64  `json:"dbSizeQuota,omitempty"`
	RaftTerm    uint64 `json:"raftTerm"`
	RaftIndex   uint64 `json:"raftIndex"`
	// RaftAppliedIndex is the last entry the member applied; it trails
	// RaftIndex, the last one committed, while the member catches up.
	RaftAppliedIndex uint64 `json:"raftAppliedIndex"`
	// Alarms are the types of the cluster's active alarms ("NOSPACE",
	// "CORRUPT"): an alarm raised by any member holds for all, and
	// AlarmList says which member raised it. NOSPACE stops writes, not
	// reads: a member under it alone can be healthy.
	Alarms  []string `json:"alarms,omitempty"`
	Healthy bool     `json:"healthy"`
	Error   string   `json:"error,omitempty"`
	// TimedOut is set when the member took the connection but its status
	// or its read did not come back in time: slow or busy, not known down.
	TimedOut bool `json:"timedOut,omitempty"`
	// Refused is set when nothing took a connection to the member's client
	// port: its etcd does not run, or its host cannot be reached.
	Refused bool   `json:"refused,omitempty"`
	Took    string `json:"took,omitempty"`
}

// Answered reports whether the member answered its Status call.
func (s MemberStatus) Answered() bool { return s.MemberID != 0 }

// Status asks every member, concurrently, for its status and health. A
// voting member is healthy when it answers a linearizable read, which needs
// quorum, as `etcdctl endpoint health` checks; a learner, which serves no
// linearizable read, when it answers a serializable one. An active alarm
// but NOSPACE makes every member unhealthy, as etcd's /health?exclude=NOSPACE
// says: NOSPACE stops writes only, CORRUPT says the data cannot be trusted.
func (c *Client) Status(ctx context.Context, members []Endpoint, timeout time.Duration) []MemberStatus {
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

func (c *Client) memberStatus(ctx context.Context, m Endpoint, timeout time.Duration) MemberStatus {
	if timeout <= 0 {
		timeout = DefaultCallTimeout
	}
	st := MemberStatus{Name: m.Name, Endpoint: m.ClientURL}
	// A member that is down would hold the call until its deadline: the
	// client waits for a connection. A refused one is told at once.
	if err := c.probe(ctx, m.ClientURL, min(timeout, time.Second)); err != nil {
		st.Error, st.Refused = "not reachable: "+err.Error(), true
		return st
	}
	cli, err := c.endpoint(m.ClientURL)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := maintenance(cli).Status(sctx, m.ClientURL)
	if err != nil {
		st.Error, st.TimedOut = describe(err), timedOut(err)
		return st
	}
	st.MemberID = resp.Header.MemberId
	st.ClusterID = resp.Header.ClusterId
	st.LeaderID = resp.Leader
	st.ID = FormatID(resp.Header.MemberId)
	st.Leader = resp.Leader == resp.Header.MemberId
	st.Learner = resp.IsLearner
	st.Version = resp.Version
	st.DBSize = resp.DbSize
	st.DBSizeInUse = resp.DbSizeInUse
	st.DBSizeQuota = resp.DbSizeQuota
	st.RaftTerm = resp.RaftTerm
	st.RaftIndex = resp.RaftIndex
	st.RaftAppliedIndex = resp.RaftAppliedIndex
	var errs []string
	for _, e := range resp.Errors {
		switch a, ok := alarmOf(e); {
		case ok:
			if !slices.Contains(st.Alarms, a) {
				st.Alarms = append(st.Alarms, a)
			}
		case e == rpctypes.ErrNoLeader.Error() && resp.Leader == 0:
			// Told below, with what it means.
		default:
			errs = append(errs, e)
		}
	}
	slices.Sort(st.Alarms)
	if len(errs) > 0 {
		st.Error = fmt.Sprint(errs)
		return st
	}
	if resp.Leader == 0 {
		// A read would wait for a leader until its deadline.
		st.Error = "no leader: the member cannot reach a quorum of its peers"
		return st
	}
	gctx, gcancel := context.WithTimeout(ctx, timeout)
	defer gcancel()
	var opts []clientv3.OpOption
	if st.Learner {
		opts = append(opts, clientv3.WithSerializable())
	}
	_, err = cli.Get(gctx, "health", opts...)
	// A cluster with auth enabled refuses the read but has answered it.
	switch {
	case err != nil && !errors.Is(err, rpctypes.ErrPermissionDenied):
		st.Error, st.TimedOut = describe(err), timedOut(err)
	case slices.ContainsFunc(st.Alarms, func(a string) bool { return a != "NOSPACE" }):
		st.Error = "active alarm " + strings.Join(st.Alarms, ", ") + ": the cluster takes no writes until it is disarmed"
	default:
		st.Healthy = true
	}
	st.Took = time.Since(start).Round(time.Millisecond).String()
	return st
}

// alarmOf returns the alarm type an error of a Status answer names: etcd
// lists each active alarm there in the text form of its AlarmMember,
// "memberID:10276657743932975437 alarm:NOSPACE".
func alarmOf(e string) (string, bool) {
	_, after, ok := strings.Cut(e, "alarm:")
	if !ok {
		return "", false
	}
	f := strings.Fields(after)
	if len(f) == 0 {
		return "", false
	}
	return f[0], true
}

// maintenance is cli's maintenance API on its kept connection: clientv3's
// own opens a connection, a TLS handshake and through an SSH dialer a
// channel, for every Status or Defragment call.
func maintenance(cli *clientv3.Client) clientv3.Maintenance {
	return clientv3.NewMaintenanceFromMaintenanceClient(clientv3.RetryMaintenanceClient(cli, cli.ActiveConnection()), cli)
}

// probe opens and closes a TCP connection to the member.
func (c *Client) probe(ctx context.Context, clientURL string, timeout time.Duration) error {
	addr, err := HostPort(clientURL)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := c.dial(ctx, addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

// timedOut reports whether a call ran out of its deadline, as etcd's client
// reports it: the context's own error, or gRPC's DeadlineExceeded.
func timedOut(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded
}

func describe(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer in time (member down, unreachable, or no quorum)"
	}
	return err.Error()
}

// endpointError is the failure of a call to one endpoint.
type endpointError struct {
	url string
	err error
}

func (e *endpointError) Error() string { return e.url + ": " + describe(e.err) }
func (e *endpointError) Unwrap() error { return e.err }

// first makes call through each endpoint in turn, each try under its own
// deadline, until one succeeds; the error holds every endpoint's. A request
// a member refused for what it asks, which the others would refuse too, is
// not tried further.
func (c *Client) first(ctx context.Context, urls []string, timeout time.Duration, call func(ctx context.Context, cli *clientv3.Client, url string) error) error {
	if timeout <= 0 {
		timeout = DefaultCallTimeout
	}
	if len(urls) == 0 {
		return errors.New("no endpoint to ask")
	}
	var errs []error
	for _, u := range urls {
		cli, err := c.endpoint(u)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err = call(cctx, cli, u)
		cancel()
		if err == nil {
			return nil
		}
		errs = append(errs, &endpointError{u, err})
		if refused(err) || ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// refused reports whether etcd refused the request itself (an unknown
// member, a revision out of range, no space, an invalid request), which
// every member would refuse, rather than for the state of the member that
// answered.
func refused(err error) bool {
	for _, r := range []error{rpctypes.ErrMemberNotFound, rpctypes.ErrPeerURLExist, rpctypes.ErrCompacted,
		rpctypes.ErrFutureRev, rpctypes.ErrNoSpace, rpctypes.ErrPermissionDenied} {
		if errors.Is(err, r) {
			return true
		}
	}
	var ee rpctypes.EtcdError
	return errors.As(err, &ee) && ee.Code() == codes.InvalidArgument
}

// FormatID prints a member ID as etcdctl does.
func FormatID(id uint64) string { return strconv.FormatUint(id, 16) }

// WaitHealthy polls until every member is healthy, ctx ends, or timeout
// passes; the error lists the members that are not healthy and why.
func (c *Client) WaitHealthy(ctx context.Context, members []Endpoint, timeout time.Duration, progress func([]MemberStatus)) ([]MemberStatus, error) {
	deadline := time.Now().Add(timeout)
	for {
		sts := c.Status(ctx, members, 2*time.Second)
		if progress != nil {
			progress(sts)
		}
		bad := Unhealthy(sts)
		if len(bad) == 0 {
			return sts, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return sts, fmt.Errorf("members not healthy after %s: %v", timeout, bad)
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Unhealthy describes the members that are not healthy, one string each.
func Unhealthy(sts []MemberStatus) []string {
	var bad []string
	for _, s := range sts {
		if !s.Healthy {
			bad = append(bad, fmt.Sprintf("%s (%s): %s", s.Name, s.Endpoint, s.Error))
		}
	}
	return bad
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

// Snapshot streams a snapshot of the database of the member at clientURL,
// with its storage version: empty in the first seconds of a new cluster,
// before etcd wrote it. The stream has no deadline: the caller's context
// ends it.
func (c *Client) Snapshot(ctx context.Context, clientURL string) (io.ReadCloser, string, error) {
	cli, err := c.endpoint(clientURL)
	if err != nil {
		return nil, "", err
	}
	resp, err := cli.SnapshotWithVersion(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("snapshot from %s: %w", clientURL, err)
	}
	return resp.Snapshot, resp.Version, nil
}

// Revision is the cluster's current revision, from a linearizable read
// through the first member that answers.
func (c *Client) Revision(ctx context.Context, urls []string, timeout time.Duration) (int64, error) {
	var rev int64
	err := c.first(ctx, urls, timeout, func(ctx context.Context, cli *clientv3.Client, _ string) error {
		resp, err := cli.Get(ctx, "health", clientv3.WithCountOnly())
		if err == nil {
			rev = resp.Header.Revision
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("read the revision: %w", err)
	}
	return rev, nil
}
