package etcdclient_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/etcdtest"
	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
)

func TestTLSConfig(t *testing.T) {
	p := etcdtest.NewPKI(t)
	cfg, err := etcdclient.TLSConfig(p.CAPEM, p.ClientCert, p.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Certificates) != 1 || cfg.RootCAs == nil || cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("config = %+v", cfg)
	}
	if _, err := etcdclient.TLSConfig([]byte("not PEM"), p.ClientCert, p.ClientKey); err == nil || !strings.Contains(err.Error(), "no CA certificate") {
		t.Errorf("without a CA: %v", err)
	}
	if _, err := etcdclient.TLSConfig(p.CAPEM, p.ClientCert, p.CAPEM); err == nil || !strings.Contains(err.Error(), "healthcheck-client") {
		t.Errorf("with a certificate as key: %v", err)
	}
}

func TestFromPKI(t *testing.T) {
	p := etcdtest.NewPKI(t)
	pki := &certs.PKI{Trust: p.CAPEM, Hosts: map[string][]certs.KeyPair{
		"h1": {{Name: certs.EtcdHealthcheckClient, CertPEM: p.ClientCert, KeyPEM: p.ClientKey}},
	}}
	cli, err := etcdclient.FromPKI(pki, "h1", nil)
	if err != nil {
		t.Fatal(err)
	}
	cli.Close()
	if _, err := etcdclient.FromPKI(pki, "h2", nil); err == nil || !strings.Contains(err.Error(), "h2") {
		t.Errorf("host without certificate: %v", err)
	}
}

func TestHostPort(t *testing.T) {
	for in, want := range map[string]string{
		"https://10.0.0.1:2379":   "10.0.0.1:2379",
		"https://10.0.0.1":        "10.0.0.1:2379",
		"https://[fd00::1]:12379": "[fd00::1]:12379",
		"https://[fd00::1]":       "[fd00::1]:2379",
		"https://etcd-0.lan":      "etcd-0.lan:2379",
	} {
		got, err := etcdclient.HostPort(in)
		if err != nil || got != want {
			t.Errorf("HostPort(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := etcdclient.HostPort("https://10.0.0.1:port\x7f"); err == nil {
		t.Error("a URL that does not parse gave no error")
	}
}

func TestFormatID(t *testing.T) {
	for id, want := range map[uint64]string{0: "0", 0x8e9e05c52164694d: "8e9e05c52164694d", 0xabc: "abc"} {
		if got := etcdclient.FormatID(id); got != want {
			t.Errorf("FormatID(%d) = %q, want %q", id, got, want)
		}
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 3)
	cli := c.Client(t, nil)
	leader := c.Leader(t)

	sts := cli.Status(t.Context(), c.Endpoints(), 2*time.Second)
	leaders := 0
	for i, st := range sts {
		m := c.Members[i]
		if !st.Healthy || st.Error != "" || !st.Answered() {
			t.Errorf("%s: %+v, want healthy", m.Name, st)
		}
		if st.Name != m.Name || st.Endpoint != m.ClientURL || st.MemberID != m.ID() || st.ID != etcdclient.FormatID(m.ID()) {
			t.Errorf("%s: identity %+v", m.Name, st)
		}
		if st.Learner || st.Version != "3.7.0" || st.DBSize == 0 || st.RaftTerm == 0 || st.RaftIndex == 0 || st.Took == "" {
			t.Errorf("%s: details %+v", m.Name, st)
		}
		if st.LeaderID != leader.ID() {
			t.Errorf("%s: leader %x, want %x", m.Name, st.LeaderID, leader.ID())
		}
		if st.Leader {
			leaders++
			if m != leader {
				t.Errorf("%s says it leads; %s does", m.Name, leader.Name)
			}
		}
	}
	if leaders != 1 {
		t.Errorf("%d members lead", leaders)
	}

	// A member that is down is told at once, not after the call's timeout.
	down := c.Follower(t)
	down.Stop()
	start := time.Now()
	sts = cli.Status(t.Context(), c.Endpoints(), 5*time.Second)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("status with a member down took %s", took)
	}
	for i, st := range sts {
		if c.Members[i] == down {
			if st.Healthy || st.Answered() || !st.Refused || st.TimedOut || !strings.HasPrefix(st.Error, "not reachable: ") {
				t.Errorf("stopped member: %+v", st)
			}
		} else if !st.Healthy {
			t.Errorf("%s, with quorum, is not healthy: %+v", c.Members[i].Name, st)
		}
	}
}

// A member that takes the connection but never answers is slow, not down:
// its status says it timed out, and that something listens.
func TestStatusTellsSlowFromDown(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			// Read, never answered: a TLS handshake waits on it.
			go func() { _, _ = io.Copy(io.Discard, conn) }()
		}
	}()
	cli := etcdclient.New(&tls.Config{MinVersion: tls.VersionTLS12}, nil)
	defer cli.Close()
	slow := etcdclient.Endpoint{Name: "slow", ClientURL: "https://" + l.Addr().String()}
	down := etcdclient.Endpoint{Name: "down", ClientURL: "https://" + etcdtest.FreeAddr(t)}
	sts := cli.Status(t.Context(), []etcdclient.Endpoint{slow, down}, 300*time.Millisecond)
	if st := sts[0]; st.Answered() || !st.TimedOut || st.Refused || !strings.HasPrefix(st.Error, "no answer in time") {
		t.Errorf("slow member: %+v", st)
	}
	if st := sts[1]; st.Answered() || st.TimedOut || !st.Refused {
		t.Errorf("member down: %+v", st)
	}
}

func TestStatusNeedsClientCertificate(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 1)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.PKI.CAPEM)
	cli := etcdclient.New(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil)
	defer cli.Close()
	st := cli.Status(t.Context(), c.Endpoints(), 500*time.Millisecond)[0]
	if st.Healthy || st.Error == "" {
		t.Errorf("a client without certificate: %+v", st)
	}
}

func TestWaitHealthy(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 3)
	cli := c.Client(t, nil)
	calls := 0
	sts, err := cli.WaitHealthy(t.Context(), c.Endpoints(), 10*time.Second, func([]etcdclient.MemberStatus) { calls++ })
	if err != nil || len(sts) != 3 || calls == 0 {
		t.Fatalf("WaitHealthy = %v, %v after %d calls", sts, err, calls)
	}

	c.Members[2].Stop()
	start := time.Now()
	sts, err = cli.WaitHealthy(t.Context(), c.Endpoints(), time.Second, nil)
	took := time.Since(start)
	if err == nil {
		t.Fatalf("WaitHealthy with a member down: %v", sts)
	}
	if msg := err.Error(); !strings.Contains(msg, "m2 ("+c.Members[2].ClientURL+"): not reachable") || strings.Contains(msg, "m0") || strings.Contains(msg, "m1") {
		t.Errorf("error names: %v", err)
	}
	if took < time.Second || took > 4*time.Second {
		t.Errorf("WaitHealthy(1s) returned after %s", took)
	}
	if bad := etcdclient.Unhealthy(sts); len(bad) != 1 {
		t.Errorf("Unhealthy = %v", bad)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := cli.WaitHealthy(ctx, c.Endpoints(), time.Minute, nil); err == nil {
		t.Error("WaitHealthy with a cancelled context and a member down succeeded")
	}
}

// TestDialer reaches a member under a name no resolver knows, through a
// dialer that maps it to the member's address, as an SSH tunnel does.
func TestDialer(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 1)
	m := c.Members[0]
	addr, err := etcdclient.HostPort(m.ClientURL)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	tunnelled := "https://" + net.JoinHostPort(etcdtest.DNSName, port)
	var dials atomic.Int32
	dial := func(ctx context.Context, a string) (net.Conn, error) {
		if a != net.JoinHostPort(etcdtest.DNSName, port) {
			return nil, errors.New("unexpected address " + a)
		}
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	cli := c.Client(t, dial)
	const rounds = 4
	for range rounds {
		st := cli.Status(t.Context(), []etcdclient.Endpoint{{Name: m.Name, ClientURL: tunnelled}}, 2*time.Second)[0]
		if !st.Healthy {
			t.Fatalf("through the dialer: %+v", st)
		}
	}
	if _, err := cli.MemberList(t.Context(), []string{tunnelled}, time.Second); err != nil {
		t.Fatal(err)
	}
	// A probe per status, and one connection kept for every call.
	if n := dials.Load(); n < rounds+1 || n > rounds+2 {
		t.Errorf("%d dials for %d statuses and a member list, want %d", n, rounds, rounds+1)
	}

	refused := c.Client(t, func(context.Context, string) (net.Conn, error) { return nil, errors.New("tunnel closed") })
	start := time.Now()
	st := refused.Status(t.Context(), c.Endpoints(), 5*time.Second)[0]
	if st.Healthy || st.Error != "not reachable: tunnel closed" || time.Since(start) > time.Second {
		t.Errorf("through a dialer that fails: %+v after %s", st, time.Since(start))
	}
}

func TestSnapshotAndRevision(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 1)
	cli := c.Client(t, nil)
	kv, err := cli.Connect(c.URLs()...)
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	var rev int64
	for range 10 {
		resp, err := kv.Put(t.Context(), "k", "v")
		if err != nil {
			t.Fatal(err)
		}
		rev = resp.Header.Revision
	}
	dead := "https://" + etcdtest.FreeAddr(t)
	got, err := cli.Revision(t.Context(), []string{dead, c.Members[0].ClientURL}, 500*time.Millisecond)
	if err != nil || got != rev {
		t.Errorf("Revision = %d, %v; want %d", got, err, rev)
	}
	if _, err := cli.Revision(t.Context(), []string{dead}, 300*time.Millisecond); err == nil || !strings.Contains(err.Error(), "read the revision") {
		t.Errorf("Revision of a dead member: %v", err)
	}

	// etcd writes its storage version, which a snapshot carries, a moment
	// after a new cluster started.
	var rc io.ReadCloser
	var version string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		rc, version, err = cli.Snapshot(t.Context(), c.Members[0].ClientURL)
		if err != nil {
			t.Fatal(err)
		}
		if version != "" || time.Now().After(deadline) {
			break
		}
		rc.Close()
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if version != "3.7.0" {
		t.Errorf("snapshot version %q", version)
	}
	// etcd ends a snapshot with the SHA-256 of the database before it.
	if len(data) < 4096+sha256.Size {
		t.Fatalf("snapshot of %d bytes", len(data))
	}
	db, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if h := sha256.Sum256(db); !bytes.Equal(h[:], sum) {
		t.Error("the snapshot's checksum does not match its data")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, _, err := cli.Snapshot(ctx, dead); err == nil {
		t.Error("snapshot from a dead member succeeded")
	}
}
