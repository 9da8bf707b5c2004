package writer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdBinary is the lab's etcd, built by make lab-build.
const etcdBinary = "../../_output/lab/bin/etcd"

type etcdServer struct {
	cmd *exec.Cmd
	url string
	tls *tls.Config // a client config that works, nil for http
}

// serverTLS is what startEtcd needs to serve https and demand client certificates.
type serverTLS struct {
	caFile, certFile, keyFile string
	client                    *tls.Config
}

func requireEtcd(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a real etcd; skipped under -short")
	}
	bin, err := filepath.Abs(etcdBinary)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI must have the lab's etcd: %v", err)
		}
		t.Skipf("no etcd binary at %s (run make lab-build): %v", bin, err)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startEtcd runs a one-member etcd on free local ports until the test ends.
func startEtcd(t *testing.T, st *serverTLS) *etcdServer {
	t.Helper()
	bin := requireEtcd(t)
	dir := t.TempDir()
	scheme := "http"
	if st != nil {
		scheme = "https"
	}
	clientURL := scheme + "://127.0.0.1:" + strconv.Itoa(freePort(t))
	peerURL := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	args := []string{
		"--name", "writer-test",
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", clientURL,
		"--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "writer-test=" + peerURL,
		"--log-level", "warn",
	}
	if st != nil {
		args = append(args, "--cert-file", st.certFile, "--key-file", st.keyFile,
			"--client-cert-auth", "--trusted-ca-file", st.caFile)
	}
	logPath := filepath.Join(dir, "etcd.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("etcd log:\n%s", b)
			}
		}
	})
	s := &etcdServer{cmd: cmd, url: clientURL}
	if st != nil {
		s.tls = st.client
	}
	cli := s.client(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := cli.Get(ctx, "health")
		cancel()
		if err == nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd at %s not ready after 10s: %v", clientURL, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *etcdServer) client(t *testing.T) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.url}, TLS: s.tls, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

func (s *etcdServer) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal etcd %v: %v", sig, err)
	}
}

func verify(t *testing.T, w *Writer) Verification {
	t.Helper()
	v, err := w.Verify(context.Background())
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	t.Logf("verify: %s", v)
	return v
}

func TestSteadyWrites(t *testing.T) {
	s := startEtcd(t, nil)
	var dials atomic.Int32
	var d net.Dialer
	w, err := Start(context.Background(), Options{
		Endpoints: []string{s.url},
		Rate:      100,
		Dialer: func(ctx context.Context, addr string) (net.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, "tcp", addr)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	r := w.Stop()
	t.Logf("report: %s", r)
	if again := w.Stop(); again.Acknowledged != r.Acknowledged || again.Duration != r.Duration {
		t.Errorf("second Stop returned %s, want the first report", again)
	}
	if r.Acknowledged < 150 {
		t.Errorf("acknowledged %d writes in ~2s, want >= 150", r.Acknowledged)
	}
	if r.Rate < 75 || r.Rate > 105 {
		t.Errorf("rate %.1f/s, want about 100/s", r.Rate)
	}
	if r.LongestGap >= 500*time.Millisecond {
		t.Errorf("longest gap %v, want < 500ms", r.LongestGap)
	}
	if r.Failed != 0 || r.Attempted != r.Acknowledged {
		t.Errorf("attempted %d, acknowledged %d, failed %d (%v): want no failure", r.Attempted, r.Acknowledged, r.Failed, r.Errors)
	}
	if dials.Load() == 0 {
		t.Error("Options.Dialer was never used")
	}
	v := verify(t, w)
	if !v.OK() || v.Checked != r.Acknowledged {
		t.Errorf("verification %s, want %d checked and none missing or wrong", v, r.Acknowledged)
	}
}

func TestFrozenEtcd(t *testing.T) {
	s := startEtcd(t, nil)
	w, err := Start(context.Background(), Options{Endpoints: []string{s.url}, Rate: 100})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	frozeAt := time.Now()
	s.signal(t, syscall.SIGSTOP)
	time.Sleep(1500 * time.Millisecond)
	s.signal(t, syscall.SIGCONT)
	time.Sleep(500 * time.Millisecond)
	r := w.Stop()
	t.Logf("report: %s (froze at %s)", r, frozeAt.Format("15:04:05.000"))
	if r.LongestGap < 1400*time.Millisecond || r.LongestGap >= 5*time.Second {
		t.Errorf("longest gap %v, want the 1.5s freeze (1.4s to 5s)", r.LongestGap)
	}
	if r.GapStart.Before(frozeAt.Add(-500*time.Millisecond)) || r.GapStart.After(frozeAt.Add(100*time.Millisecond)) {
		t.Errorf("longest gap began at %s, want just before the freeze at %s",
			r.GapStart.Format("15:04:05.000"), frozeAt.Format("15:04:05.000"))
	}
	v := verify(t, w)
	if len(v.Missing) != 0 || len(v.Wrong) != 0 || v.Checked != r.Acknowledged {
		t.Errorf("verification %s, want %d checked and none missing or wrong", v, r.Acknowledged)
	}
}

// The writes that fail are timed: here those during a freeze, and no other.
func TestFailuresAreTimed(t *testing.T) {
	s := startEtcd(t, nil)
	w, err := Start(context.Background(), Options{Endpoints: []string{s.url}, Rate: 100, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	frozeAt := time.Now()
	s.signal(t, syscall.SIGSTOP)
	time.Sleep(time.Second)
	thawedAt := time.Now()
	s.signal(t, syscall.SIGCONT)
	time.Sleep(300 * time.Millisecond)
	r := w.Stop()
	if r.Failed == 0 || len(r.FailedAt) != r.Failed {
		t.Fatalf("%d failures, %d timed: %s", r.Failed, len(r.FailedAt), r)
	}
	for _, at := range r.FailedAt {
		if at.Before(frozeAt.Add(-200*time.Millisecond)) || at.After(thawedAt) {
			t.Errorf("a write that began at %s failed, outside the freeze %s-%s", at.Format("15:04:05.000"), frozeAt.Format("15:04:05.000"), thawedAt.Format("15:04:05.000"))
		}
	}
}

func TestVerifyDetectsLoss(t *testing.T) {
	s := startEtcd(t, nil)
	prefix := "/verify-test/"
	w, err := Start(context.Background(), Options{Endpoints: []string{s.url}, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	r := w.Stop()
	t.Logf("report: %s", r)
	if len(w.acked) < 3 {
		t.Fatalf("only %d acknowledged writes, need 3", len(w.acked))
	}
	lost, changed := w.acked[len(w.acked)/2].key, w.acked[len(w.acked)/3].key
	cli := s.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if resp, err := cli.Delete(ctx, lost); err != nil || resp.Deleted != 1 {
		t.Fatalf("delete %s: deleted %v, %v", lost, resp, err)
	}
	if _, err := cli.Put(ctx, changed, "tampered"); err != nil {
		t.Fatalf("overwrite %s: %v", changed, err)
	}
	v := verify(t, w)
	if len(v.Missing) != 1 || v.Missing[0] != lost {
		t.Errorf("missing %q, want exactly [%q]", v.Missing, lost)
	}
	if len(v.Wrong) != 1 || v.Wrong[0] != changed {
		t.Errorf("wrong %q, want exactly [%q]", v.Wrong, changed)
	}
	if v.OK() || v.Checked != r.Acknowledged {
		t.Errorf("verification %s: want not OK with %d checked", v, r.Acknowledged)
	}
}

func TestReloadAfterTLSFailure(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCA(t, "writer-test-ca")
	otherCA, otherKey := newCA(t, "unrelated-ca")
	serverCert := newLeaf(t, ca, caKey, x509.ExtKeyUsageServerAuth)
	good := &tls.Config{RootCAs: pool(ca), Certificates: []tls.Certificate{newLeaf(t, ca, caKey, x509.ExtKeyUsageClientAuth)}}
	st := &serverTLS{
		caFile:   writePEM(t, dir, "ca.crt", "CERTIFICATE", ca.Raw),
		certFile: writePEM(t, dir, "server.crt", "CERTIFICATE", serverCert.Certificate[0]),
		keyFile:  writeKey(t, dir, "server.key", serverCert.PrivateKey.(*ecdsa.PrivateKey)),
		client:   good,
	}
	s := startEtcd(t, st)

	for _, tc := range []struct {
		name string
		bad  *tls.Config
	}{
		// The writer rejects the server: a handshake error.
		{"unknown server authority", &tls.Config{RootCAs: pool(otherCA), Certificates: good.Certificates}},
		// The server rejects the writer: under TLS 1.3 an alert on the first read.
		{"rejected client certificate", &tls.Config{RootCAs: pool(ca),
			Certificates: []tls.Certificate{newLeaf(t, otherCA, otherKey, x509.ExtKeyUsageClientAuth)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var reloads atomic.Int32
			w, err := Start(context.Background(), Options{
				Endpoints: []string{s.url},
				TLS:       tc.bad,
				Timeout:   500 * time.Millisecond,
				Prefix:    "/reload-test/" + tc.name + "/",
				Reload: func() (*tls.Config, error) {
					reloads.Add(1)
					return good, nil
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(1500 * time.Millisecond)
			r := w.Stop()
			t.Logf("report: %s", r)
			if reloads.Load() != 1 || r.Reloads != 1 {
				t.Errorf("Reload called %d times, report says %d, want 1", reloads.Load(), r.Reloads)
			}
			if r.Acknowledged == 0 || r.Failed == 0 {
				t.Errorf("acknowledged %d, failed %d: want failures, then writes after the reload", r.Acknowledged, r.Failed)
			}
			tlsErrors := 0
			for msg, n := range r.Errors {
				if isTLSFailure(msg) {
					tlsErrors += n
				}
			}
			if tlsErrors == 0 {
				t.Errorf("errors %v name no TLS failure", r.Errors)
			}
			if v := verify(t, w); !v.OK() || v.Checked != r.Acknowledged {
				t.Errorf("verification %s, want %d checked and none missing or wrong", v, r.Acknowledged)
			}
		})
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"no endpoints":     {},
		"negative rate":    {Endpoints: []string{"http://127.0.0.1:1"}, Rate: -1},
		"negative timeout": {Endpoints: []string{"http://127.0.0.1:1"}, Timeout: -time.Second},
	} {
		if _, err := Start(context.Background(), o); err == nil {
			t.Errorf("%s: Start succeeded, want an error", name)
		}
	}
}

func TestReportString(t *testing.T) {
	r := Report{
		Attempted: 3020, Acknowledged: 3012, Failed: 8,
		Duration: 30 * time.Second, Rate: 100.4, LongestGap: 1234 * time.Millisecond,
		GapStart: time.Date(2026, 1, 2, 15, 4, 5, 123e6, time.Local),
		Errors:   map[string]int{"context deadline exceeded": 5, "etcdserver: leader changed": 3},
	}
	want := "acked 3012/3020 (100.4/s over 30s), longest gap 1.234s at 15:04:05.123, 8 failed: " +
		"context deadline exceeded ×5; etcdserver: leader changed ×3"
	if got := r.String(); got != want {
		t.Errorf("String() =\n%s\nwant\n%s", got, want)
	}
}

func newCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

var serial atomic.Int64

func newLeaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(100 + serial.Add(1)),
		Subject:      pkix.Name{CommonName: "writer-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeKey(t *testing.T, dir, name string, key *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, dir, name, "EC PRIVATE KEY", der)
}
