package etcdclient_test

import (
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

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
)

// testDNSName is a name the members' certificates carry that no resolver
// knows: only a dialer that maps it reaches a member under it.
const testDNSName = "etcd.test"

// testPKI is a CA with a certificate for the members (server and peer, for
// 127.0.0.1 and testDNSName) and one for the client, as files and PEM.
type testPKI struct {
	dir                string
	caPEM              []byte
	clientCert, client []byte
}

func (p *testPKI) file(name string) string { return filepath.Join(p.dir, name) }

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
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
	p.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	p.write(t, "ca.crt", p.caPEM)

	leaf := func(serial int64, cn string, usages ...x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usages,
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost", testDNSName},
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
	p.clientCert, p.client = leaf(3, "healthcheck-client", x509.ExtKeyUsageClientAuth)
	return p
}

func (p *testPKI) write(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(p.file(name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlsInfo is a member's server and peer TLS, client certificates required.
func (p *testPKI) tlsInfo() transport.TLSInfo {
	return transport.TLSInfo{CertFile: p.file("member.crt"), KeyFile: p.file("member.key"),
		TrustedCAFile: p.file("ca.crt"), ClientCertAuth: true}
}

// testCluster is a cluster of etcd members run inside the test process on
// 127.0.0.1, with mutual TLS between clients and members and among members.
type testCluster struct {
	pki       *testPKI
	configure []func(*embed.Config)
	members   []*testMember
}

// testMember is one embedded member; URLs are known before it starts, as a
// learner's peer URL must be.
type testMember struct {
	name      string
	clientURL string
	peerURL   string
	dir       string

	etcd    *embed.Etcd
	once    sync.Once
	stopped bool
}

// startCluster starts n members forming a new cluster and waits until they
// serve; configure, if given, changes each member's configuration.
func startCluster(t *testing.T, n int, configure ...func(*embed.Config)) *testCluster {
	t.Helper()
	c := &testCluster{pki: newTestPKI(t), configure: configure}
	t.Cleanup(c.stop)
	for attempt := 1; ; attempt++ {
		c.members = nil
		for i := range n {
			c.members = append(c.members, c.newMember(t, fmt.Sprintf("m%d", i)))
		}
		err := c.start(embed.ClusterStateFlagNew, c.members...)
		if err == nil {
			return c
		}
		c.stop()
		// Another process may have taken a port since it was picked.
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
	}
}

// join starts members joining the running cluster, as an added learner does.
func (c *testCluster) join(t *testing.T, ms ...*testMember) {
	t.Helper()
	if err := c.start(embed.ClusterStateFlagExisting, ms...); err != nil {
		t.Fatal(err)
	}
}

// newMember reserves a data directory and free ports for a member; start
// runs it.
func (c *testCluster) newMember(t *testing.T, name string) *testMember {
	t.Helper()
	return &testMember{name: name, clientURL: "https://" + freeAddr(t), peerURL: "https://" + freeAddr(t), dir: t.TempDir()}
}

// picked are the ports freeAddr handed out in this test process: a port
// is free until a member listens on it, and must not be picked twice.
var picked = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// freeAddr is a free address on 127.0.0.1, with a port below the ephemeral
// range: a port the kernel hands out can be taken by any outgoing
// connection between the pick and etcd's listen.
func freeAddr(t *testing.T) string {
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
func (c *testCluster) start(state string, ms ...*testMember) error {
	var ic []string
	for _, m := range c.members {
		ic = append(ic, m.name+"="+m.peerURL)
	}
	if state == embed.ClusterStateFlagExisting {
		for _, m := range ms {
			ic = append(ic, m.name+"="+m.peerURL)
		}
		c.members = append(c.members, ms...)
	}
	for _, m := range ms {
		cfg := embed.NewConfig()
		cfg.Name, cfg.Dir = m.name, m.dir
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cu, err := url.Parse(m.clientURL)
		if err != nil {
			return err
		}
		pu, err := url.Parse(m.peerURL)
		if err != nil {
			return err
		}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
		cfg.InitialCluster = strings.Join(ic, ",")
		cfg.ClusterState = state
		cfg.ClientTLSInfo, cfg.PeerTLSInfo = c.pki.tlsInfo(), c.pki.tlsInfo()
		// Elections of a few hundred milliseconds keep the tests short and
		// still tolerate a loaded machine.
		cfg.TickMs, cfg.ElectionMs = 50, 500
		cfg.UnsafeNoFsync = true
		for _, f := range c.configure {
			f(cfg)
		}
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			return fmt.Errorf("start %s: %w", m.name, err)
		}
		m.etcd = e
	}
	for _, m := range ms {
		select {
		case <-m.etcd.Server.ReadyNotify():
		case err := <-m.etcd.Err():
			return fmt.Errorf("%s: %w", m.name, err)
		case <-time.After(20 * time.Second):
			return fmt.Errorf("%s is not ready after 20s", m.name)
		}
	}
	return nil
}

// stop stops every member.
func (c *testCluster) stop() { stopMembers(c.members...) }

// stopMembers stops the members: the followers at once, then the leader,
// which would otherwise try for seconds to hand its leadership to a member
// that is stopping too.
func stopMembers(ms ...*testMember) {
	var wg sync.WaitGroup
	var leaders []*testMember
	for _, m := range ms {
		switch {
		case m.etcd == nil || m.stopped:
		case m.etcd.Server.Leader() == m.etcd.Server.MemberID():
			leaders = append(leaders, m)
		default:
			wg.Go(m.stop)
		}
	}
	wg.Wait()
	for _, m := range leaders {
		m.stop()
	}
}

// stop stops the member; a second stop does nothing.
func (m *testMember) stop() {
	m.once.Do(func() {
		m.stopped = true
		select {
		case <-m.etcd.Server.ReadyNotify():
		default:
			// Close waits for the client servers, which start once the
			// member is ready.
			m.etcd.Server.HardStop()
		}
		m.etcd.Close()
	})
}

// id is the member's ID in the cluster.
func (m *testMember) id() uint64 { return uint64(m.etcd.Server.MemberID()) }

func (m *testMember) endpoint() etcdclient.Endpoint {
	return etcdclient.Endpoint{Name: m.name, ClientURL: m.clientURL}
}

func (c *testCluster) endpoints() []etcdclient.Endpoint {
	var out []etcdclient.Endpoint
	for _, m := range c.members {
		out = append(out, m.endpoint())
	}
	return out
}

func (c *testCluster) urls() []string {
	var out []string
	for _, m := range c.members {
		out = append(out, m.clientURL)
	}
	return out
}

// client is an etcdclient.Client with the client certificate, through dial
// (nil for direct connections), closed at the end of the test.
func (c *testCluster) client(t *testing.T, dial etcdclient.Dialer) *etcdclient.Client {
	t.Helper()
	cfg, err := etcdclient.TLSConfig(c.pki.caPEM, c.pki.clientCert, c.pki.client)
	if err != nil {
		t.Fatal(err)
	}
	cli := etcdclient.New(cfg, dial)
	t.Cleanup(cli.Close)
	return cli
}

// leader is the member that leads, as the members see it.
func (c *testCluster) leader(t *testing.T) *testMember {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range c.members {
			if !m.stopped && m.etcd.Server.Leader() == m.etcd.Server.MemberID() {
				return m
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no leader after 10s")
	return nil
}

// follower is a running member that does not lead.
func (c *testCluster) follower(t *testing.T) *testMember {
	t.Helper()
	leader := c.leader(t)
	for _, m := range c.members {
		if m != leader && !m.stopped {
			return m
		}
	}
	t.Fatal("no follower")
	return nil
}
