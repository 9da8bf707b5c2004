// Package etcdtest runs clusters of etcd members inside a test process, on
// 127.0.0.1, with mutual TLS between clients and members and among
// members, as kubeadm's members have it. Only tests import it.
package etcdtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
)

// DNSName is a name the members' certificates carry that no resolver
// knows: only a dialer that maps it reaches a member under it.
const DNSName = "etcd.test"

// PKI is a CA with a certificate for the members (server and peer, for
// 127.0.0.1 to 127.0.0.9 and DNSName) and one for the client, as files in
// Dir and PEM.
type PKI struct {
	Dir                   string
	CAPEM                 []byte
	ClientCert, ClientKey []byte
}

// File is the path of one of the PKI's files: ca.crt, member.crt, member.key.
func (p *PKI) File(name string) string { return filepath.Join(p.Dir, name) }

// NewPKI makes a PKI in a temporary directory of the test.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	p := &PKI{Dir: t.TempDir()}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "etcd-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	p.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	p.write(t, "ca.crt", p.CAPEM)

	leaf := func(serial int64, cn string, usages ...x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usages,
			IPAddresses: loopbacks(), DNSNames: []string{"localhost", DNSName},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	}
	memberCert, memberKey := leaf(2, "etcd-member", x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	p.write(t, "member.crt", memberCert)
	p.write(t, "member.key", memberKey)
	p.ClientCert, p.ClientKey = leaf(3, "healthcheck-client", x509.ExtKeyUsageClientAuth)
	return p
}

// loopbacks are the addresses Hosts gives members: 127.0.0.1 to 127.0.0.9.
func loopbacks() []net.IP {
	var out []net.IP
	for i := 1; i <= 9; i++ {
		out = append(out, net.IPv4(127, 0, 0, byte(i)))
	}
	return out
}

func (p *PKI) write(t testing.TB, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(p.File(name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TLSInfo is a member's server and peer TLS, client certificates required.
func (p *PKI) TLSInfo() transport.TLSInfo {
	return transport.TLSInfo{CertFile: p.File("member.crt"), KeyFile: p.File("member.key"),
		TrustedCAFile: p.File("ca.crt"), ClientCertAuth: true}
}

// Cluster is a cluster of etcd members run inside the test process.
type Cluster struct {
	PKI       *PKI
	Members   []*Member
	configure []func(*embed.Config)
}

// Member is one embedded member; its URLs are known before it starts, as
// a learner's peer URL must be.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string
	Dir       string
	// Etcd is the running member; nil before it starts.
	Etcd *embed.Etcd

	once    sync.Once
	stopped bool
}

// Start starts n members forming a new cluster and waits until they
// serve; configure, if given, changes each member's configuration. The
// members stop when the test ends.
func Start(t testing.TB, n int, configure ...func(*embed.Config)) *Cluster {
	t.Helper()
	c := &Cluster{PKI: NewPKI(t), configure: configure}
	t.Cleanup(c.Stop)
	for attempt := 1; ; attempt++ {
		c.Members = nil
		for i := range n {
			c.Members = append(c.Members, c.NewMember(t, fmt.Sprintf("m%d", i)))
		}
		err := c.start(embed.ClusterStateFlagNew, c.Members...)
		if err == nil {
			return c
		}
		c.Stop()
		// Another process may have taken a port since it was picked.
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
	}
}

// Join starts members joining the running cluster, as an added learner does.
func (c *Cluster) Join(t testing.TB, ms ...*Member) {
	t.Helper()
	if err := c.start(embed.ClusterStateFlagExisting, ms...); err != nil {
		t.Fatal(err)
	}
}

// NewMember reserves a data directory and free ports for a member; Join
// runs it.
func (c *Cluster) NewMember(t testing.TB, name string) *Member {
	t.Helper()
	return &Member{Name: name, ClientURL: "https://" + FreeAddr(t), PeerURL: "https://" + FreeAddr(t), Dir: t.TempDir()}
}

// picked are the ports FreeAddr handed out in this test process: a port
// is free until a member listens on it, and must not be picked twice.
var picked = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreeAddr is a free address on 127.0.0.1, with a port below the ephemeral
// range: a port the kernel hands out can be taken by any outgoing
// connection between the pick and etcd's listen.
func FreeAddr(t testing.TB) string {
	t.Helper()
	picked.Lock()
	defer picked.Unlock()
	for range 100 {
		port := 20000 + mrand.IntN(12000)
		if picked.ports[port] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err == nil {
			l.Close()
			picked.ports[port] = true
			return addr
		}
	}
	t.Fatal("no free port")
	return ""
}

// start runs the members with the given initial cluster state; for a new
// cluster the initial cluster is the members themselves, for an existing
// one the members of c with the new ones. It waits until all serve.
func (c *Cluster) start(state string, ms ...*Member) error {
	var ic []string
	for _, m := range c.Members {
		ic = append(ic, m.Name+"="+m.PeerURL)
	}
	if state == embed.ClusterStateFlagExisting {
		for _, m := range ms {
			ic = append(ic, m.Name+"="+m.PeerURL)
		}
		c.Members = append(c.Members, ms...)
	}
	for _, m := range ms {
		cfg := embed.NewConfig()
		cfg.Name, cfg.Dir = m.Name, m.Dir
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cu, err := url.Parse(m.ClientURL)
		if err != nil {
			return err
		}
		pu, err := url.Parse(m.PeerURL)
		if err != nil {
			return err
		}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
		cfg.InitialCluster = strings.Join(ic, ",")
		cfg.ClusterState = state
		cfg.ClientTLSInfo, cfg.PeerTLSInfo = c.PKI.TLSInfo(), c.PKI.TLSInfo()
		// Elections of a few hundred milliseconds keep the tests short and
		// still tolerate a loaded machine.
		cfg.TickMs, cfg.ElectionMs = 50, 500
		cfg.UnsafeNoFsync = true
		for _, f := range c.configure {
			f(cfg)
		}
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			return fmt.Errorf("start %s: %w", m.Name, err)
		}
		m.Etcd = e
	}
	for _, m := range ms {
		select {
		case <-m.Etcd.Server.ReadyNotify():
		case err := <-m.Etcd.Err():
			return fmt.Errorf("%s: %w", m.Name, err)
		case <-time.After(20 * time.Second):
			return fmt.Errorf("%s is not ready after 20s", m.Name)
		}
	}
	return nil
}

// Stop stops every member.
func (c *Cluster) Stop() { StopMembers(c.Members...) }

// StopMembers stops the members: the followers at once, then the leader,
// which would otherwise try for seconds to hand its leadership to a member
// that is stopping too.
func StopMembers(ms ...*Member) {
	var wg sync.WaitGroup
	var leaders []*Member
	for _, m := range ms {
		switch {
		case m.Etcd == nil || m.stopped:
		case m.Etcd.Server.Leader() == m.Etcd.Server.MemberID():
			leaders = append(leaders, m)
		default:
			wg.Go(m.Stop)
		}
	}
	wg.Wait()
	for _, m := range leaders {
		m.Stop()
	}
}

// Stop stops the member; a second Stop does nothing.
func (m *Member) Stop() {
	m.once.Do(func() {
		m.stopped = true
		select {
		case <-m.Etcd.Server.ReadyNotify():
		default:
			// Close waits for the client servers, which start once the
			// member is ready.
			m.Etcd.Server.HardStop()
		}
		m.Etcd.Close()
	})
}

// Stopped reports whether Stop was called.
func (m *Member) Stopped() bool { return m.stopped }

// ID is the member's ID in the cluster.
func (m *Member) ID() uint64 { return uint64(m.Etcd.Server.MemberID()) }

// Leads reports whether the running member leads, as it sees itself.
func (m *Member) Leads() bool {
	return !m.stopped && m.Etcd != nil && m.Etcd.Server.Leader() == m.Etcd.Server.MemberID()
}

// Endpoint is the member as etcdclient's callers name it.
func (m *Member) Endpoint() etcdclient.Endpoint {
	return etcdclient.Endpoint{Name: m.Name, ClientURL: m.ClientURL}
}

// Endpoints are every member's.
func (c *Cluster) Endpoints() []etcdclient.Endpoint {
	var out []etcdclient.Endpoint
	for _, m := range c.Members {
		out = append(out, m.Endpoint())
	}
	return out
}

// URLs are every member's client URL.
func (c *Cluster) URLs() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.ClientURL)
	}
	return out
}

// Hosts are the members as an inventory's hosts: member i at 127.0.0.(i+1),
// whose client URL, https://127.0.0.(i+1):2379, Dialer maps to the member.
func (c *Cluster) Hosts() []config.Host {
	var out []config.Host
	for i, m := range c.Members {
		out = append(out, config.Host{Name: m.Name, Address: loopbacks()[i].String()})
	}
	return out
}

// Dialer reaches member i at 127.0.0.(i+1):2379, as Hosts names it; any
// other address is refused.
func (c *Cluster) Dialer() etcdclient.Dialer {
	var d net.Dialer
	return func(ctx context.Context, addr string) (net.Conn, error) {
		for i, m := range c.Members {
			if addr == net.JoinHostPort(loopbacks()[i].String(), "2379") {
				real, err := etcdclient.HostPort(m.ClientURL)
				if err != nil {
					return nil, err
				}
				return d.DialContext(ctx, "tcp", real)
			}
		}
		return nil, fmt.Errorf("dial %s: connection refused", addr)
	}
}

// Client is an etcdclient.Client with the client certificate, through
// dial (nil for direct connections), closed at the end of the test.
func (c *Cluster) Client(t testing.TB, dial etcdclient.Dialer) *etcdclient.Client {
	t.Helper()
	cfg, err := etcdclient.TLSConfig(c.PKI.CAPEM, c.PKI.ClientCert, c.PKI.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	cli := etcdclient.New(cfg, dial)
	t.Cleanup(cli.Close)
	return cli
}

// Leader is the member that leads, as the members see it.
func (c *Cluster) Leader(t testing.TB) *Member {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range c.Members {
			if m.Leads() {
				return m
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no leader after 10s")
	return nil
}

// Follower is a running member that does not lead.
func (c *Cluster) Follower(t testing.TB) *Member {
	t.Helper()
	leader := c.Leader(t)
	for _, m := range c.Members {
		if m != leader && !m.stopped {
			return m
		}
	}
	t.Fatal("no follower")
	return nil
}
