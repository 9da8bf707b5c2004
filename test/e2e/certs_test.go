package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/test/lab"
	"github.com/etcdadm-io/etcdadm/test/writer"
)

// leafState is what renewal must change in a certificate on a host.
type leafState struct {
	serial string
	key    []byte
}

func hostLeaves(t *testing.T, hosts []*lab.Host) map[string]leafState {
	t.Helper()
	out := map[string]leafState{}
	for _, h := range hosts {
		for _, spec := range certs.LeafSpecs() {
			base := path.Join(manifests.CertificatesDir, spec.BaseName)
			crt, err := h.ReadFile(context.Background(), base+".crt")
			if err != nil {
				t.Fatal(err)
			}
			key, err := h.ReadFile(context.Background(), base+".key")
			if err != nil {
				t.Fatal(err)
			}
			block, _ := pem.Decode(crt)
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			out[h.Name+":"+spec.Name] = leafState{serial: cert.SerialNumber.String(), key: key}
		}
	}
	return out
}

func stepCheckExpirationRemote(t *testing.T, s *story) {
	r := s.etcdadm(t, "certs", "check-expiration", "-f", s.file, "--remote", "-o", "json", "--warn-within", "720h")
	if r.err != nil {
		t.Fatalf("nothing expires within 30 days, yet: %v", r.err)
	}
	var rows []certs.Expiration
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		t.Fatal(err)
	}
	perHost := map[string]int{}
	for _, row := range rows {
		perHost[row.Host]++
		if row.Host != "" && (row.DiffersFromLocal || row.Problem != "" || row.Issuer != "CN=etcd-ca") {
			t.Errorf("row %+v", row)
		}
	}
	// The local CA and 4 leaves of 3 hosts; on each host its CA and 4 leaves.
	if perHost[""] != 13 || perHost["e2e0"] != 5 || perHost["e2e1"] != 5 || perHost["e2e2"] != 5 {
		t.Errorf("rows per host: %v", perHost)
	}
	r = s.etcdadm(t, "certs", "check-expiration", "-f", s.file, "--remote", "--warn-within", "8761h")
	if r.err == nil || !strings.Contains(r.stderr, "e2e1:/etc/kubernetes/pki/etcd/server.crt expires") {
		t.Errorf("a certificate expiring within a year and a day: %v", r.err)
	}
}

func stepRenew(t *testing.T, s *story) {
	members := s.lab.Hosts[:3]
	before := hostLeaves(t, members)
	ca, _ := members[0].ReadFile(context.Background(), "/etc/kubernetes/pki/etcd/ca.crt")
	w := s.startWriter(t)
	start := time.Now()
	r := s.etcdadm(t, "certs", "renew", "-f", s.file)
	took := time.Since(start)
	rep := s.stopWriter(t, w)
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("renewal of 3 members took %s; longest write gap %s", took.Round(time.Millisecond), rep.LongestGap.Round(time.Millisecond))
	if rep.LongestGap > 2*time.Second {
		t.Errorf("writes stalled %s, want at most 2s", rep.LongestGap)
	}
	after := hostLeaves(t, members)
	for k, old := range before {
		now := after[k]
		if now.serial == old.serial || string(now.key) == string(old.key) {
			t.Errorf("%s was not renewed (serial %s, same key %v)", k, now.serial, string(now.key) == string(old.key))
		}
	}
	for _, h := range members {
		if got, _ := h.ReadFile(context.Background(), "/etc/kubernetes/pki/etcd/ca.crt"); string(got) != string(ca) {
			t.Errorf("the CA on %s changed", h.Name)
		}
		if !strings.Contains(r.stderr, "["+h.Name+"] restarting etcd") {
			t.Errorf("%s's etcd was not restarted", h.Name)
		}
	}
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil || !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("apply after renew: %v\n%s", r.err, r.stdout)
	}
}

// stepExpired gives every host leaves that expired an hour ago and restarts
// every member: the cluster is down. certs renew brings it back.
func stepExpired(t *testing.T, s *story) {
	ctx := context.Background()
	members := s.lab.Hosts[:3]
	c, _, client := s.cluster(t)
	cli, err := client.Connect(manifests.ClientURL(c.Spec.Hosts[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = cli.Put(pctx, "/e2e/before-expiry", "kept")
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	// Certificates that were issued two hours ago for one hour, in the
	// local PKI (the inventory is left as it is).
	expired, _, err := config.Load(s.file)
	if err != nil {
		t.Fatal(err)
	}
	expired.Spec.PKI.CertificateValidity = "1h"
	past := time.Now().Add(-2 * time.Hour)
	pki, _, err := certs.Ensure(expired, certs.Options{Now: func() time.Time { return past }, Renew: []string{"all"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range members {
		for _, kp := range pki.Hosts[h.Name] {
			base := path.Join(manifests.CertificatesDir, kp.BaseName)
			if err := h.WriteFile(ctx, base+".crt", kp.CertPEM, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := h.WriteFile(ctx, base+".key", kp.KeyPEM, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		for _, pid := range h.PIDs("etcd") {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
	}
	waitFor(t, "the members to restart on expired certificates", 2*time.Minute, func() bool {
		for _, h := range members {
			if len(h.PIDs("etcd")) == 0 {
				return false
			}
		}
		return true
	})
	// Every member runs again, and presents a peer certificate that expired
	// (a member without quorum does not serve clients at all).
	ca := x509.NewCertPool()
	ca.AppendCertsFromPEM(pki.CA.CertPEM)
	var why []string
	waitFor(t, "every member to serve its expired certificate", 3*time.Minute, func() bool {
		why = nil
		for _, h := range members {
			d := &net.Dialer{Timeout: time.Second}
			conn, err := tls.DialWithDialer(d, "tcp", net.JoinHostPort(h.Address, "2380"), &tls.Config{RootCAs: ca, ServerName: h.Address})
			if err == nil {
				conn.Close()
				t.Fatalf("%s serves a valid certificate: the test proves nothing", h.Name)
			}
			if !strings.Contains(err.Error(), "expired") {
				return false
			}
			why = append(why, h.Name+": "+err.Error())
		}
		return true
	})
	if sts := client.Status(ctx, ops.Endpoints(c), 2*time.Second); sts[0].Healthy || sts[1].Healthy || sts[2].Healthy {
		t.Fatalf("a member answers etcdadm: %+v", sts)
	}
	t.Logf("down: %v", why)
	start := time.Now()
	r := s.etcdadm(t, "certs", "renew", "-f", s.file, "--health-timeout", "3m")
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("recovery took %s", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(r.stderr, "expired, so no member can reach another") || !strings.Contains(r.stdout, "cluster: 3/3 members healthy") {
		t.Errorf("renew of expired certificates:\n%s\n%s", r.stdout, r.stderr)
	}
	_, _, client = s.cluster(t)
	cli2, err := client.Connect(manifests.ClientURL(c.Spec.Hosts[1]))
	if err != nil {
		t.Fatal(err)
	}
	defer cli2.Close()
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := cli2.Get(gctx, "/e2e/before-expiry")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "kept" {
		t.Errorf("the data written before the expiry: %v %v", resp, err)
	}
	if r := s.etcdadm(t, "certs", "check-expiration", "-f", s.file, "--remote", "--warn-within", "720h"); r.err != nil {
		t.Errorf("after the recovery: %v", r.err)
	}
}

// rotationWriter writes with the local PKI's apiserver-etcd-client and, on a
// TLS failure, reloads it with every CA the PKI holds: a client following a
// CA rotation as an operator would make it.
func (s *story) rotationWriter(t *testing.T) *writer.Writer {
	t.Helper()
	c, _, _ := s.cluster(t)
	load := func() (*tls.Config, error) {
		dir := c.PKIDir()
		bundle, err := os.ReadFile(filepath.Join(dir, certs.CABaseName+".crt"))
		if err != nil {
			return nil, err
		}
		if next, err := os.ReadFile(filepath.Join(dir, certs.NewCABaseName+".crt")); err == nil {
			bundle = append(bundle, next...)
		}
		leaf := filepath.Join(certs.HostDir(dir, c.Spec.Hosts[0].Name), "apiserver-etcd-client")
		crt, err := os.ReadFile(leaf + ".crt")
		if err != nil {
			return nil, err
		}
		key, err := os.ReadFile(leaf + ".key")
		if err != nil {
			return nil, err
		}
		return etcdclient.TLSConfig(bundle, crt, key)
	}
	tlsConfig, err := load()
	if err != nil {
		t.Fatal(err)
	}
	w, err := writer.Start(context.Background(), writer.Options{Endpoints: clientURLs(c), TLS: tlsConfig, Reload: load, Rate: 100, Timeout: time.Second, Prefix: "/e2e-writer/" + t.Name() + "/"})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// onlyCA checks that every host trusts the one CA in want, and holds
// leaves it issued.
func onlyCA(t *testing.T, hosts []*lab.Host, want []byte) {
	t.Helper()
	ca, err := certs.ParseCert(want)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		got, err := h.ReadFile(context.Background(), "/etc/kubernetes/pki/etcd/ca.crt")
		if err != nil || string(got) != string(want) {
			t.Errorf("%s trusts %d bytes, not the one CA (%v)", h.Name, len(got), err)
		}
		for _, spec := range certs.LeafSpecs() {
			data, err := h.ReadFile(context.Background(), path.Join(manifests.CertificatesDir, spec.BaseName+".crt"))
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := certs.ParseCert(data)
			if err != nil || !certs.IssuedBy(leaf, ca) {
				t.Errorf("%s's %s was not issued by the CA (%v)", h.Name, spec.Name, err)
			}
		}
	}
}

func stepRotateCA(t *testing.T, s *story) {
	members := s.lab.Hosts[:3]
	pkiDir := filepath.Join(s.dir, "pki")
	old, _ := os.ReadFile(filepath.Join(pkiDir, certs.CABaseName+".crt"))
	w := s.rotationWriter(t)
	start := time.Now()
	r := s.etcdadm(t, "certs", "rotate-ca", "-f", s.file)
	took := time.Since(start)
	rep := s.stopWriter(t, w)
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("CA rotation of 3 members took %s; longest write gap %s; the writer reloaded its TLS %d time(s)", took.Round(time.Millisecond), rep.LongestGap.Round(time.Millisecond), rep.Reloads)
	// The writer learns of a failing handshake only from its next write:
	// the write in flight may time out (1s) before the one that sees the
	// TLS failure and reloads; on a loaded machine that is two timeouts.
	if rep.LongestGap > 3*time.Second {
		t.Errorf("writes stalled %s, want at most 3s (two writer timeouts and a TLS reload)", rep.LongestGap)
	}
	for _, stage := range []string{"(a) trust both CAs", "(b) move the leaves", "(c) drop the old CA"} {
		if !strings.Contains(r.stderr, "stage "+stage) {
			t.Errorf("no stage %q", stage)
		}
	}
	now, _ := os.ReadFile(filepath.Join(pkiDir, certs.CABaseName+".crt"))
	if string(now) == string(old) {
		t.Fatal("the local CA did not change")
	}
	onlyCA(t, members, now)
	if matches, _ := filepath.Glob(filepath.Join(pkiDir, "backup", "*", "etcd", "ca.crt")); len(matches) == 0 {
		t.Error("the old CA was not kept")
	}
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil || !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("apply after the rotation: %v\n%s", r.err, r.stdout)
	}
}

// killAfterFirstStage runs rotate-ca and kills it once its first stage is done.
func (s *story) killAfterFirstStage(t *testing.T) {
	t.Helper()
	cmd, out := startEtcdadm(t, s.bin, "certs", "rotate-ca", "-f", s.file)
	killed := false
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if strings.Contains(out.String(), "stage (a) trust both CAs, the new CA first done") {
			killed = cmd.Process.Kill() == nil
			break
		}
	}
	_ = cmd.Wait()
	t.Logf("the killed rotation:\n%s", out.String())
	if !killed {
		t.Fatal("the first stage never ended")
	}
}

func stepRotateCAResumed(t *testing.T, s *story) {
	members := s.lab.Hosts[:3]
	pkiDir := filepath.Join(s.dir, "pki")
	w := s.rotationWriter(t)
	defer s.stopWriter(t, w)
	s.killAfterFirstStage(t)
	r := s.etcdadm(t, "apply", "-f", s.file)
	if r.err == nil || !strings.Contains(r.stderr, "a CA rotation is in progress") {
		t.Errorf("apply during a rotation: %v", r.err)
	}
	r = s.etcdadm(t, "certs", "rotate-ca", "-f", s.file)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if strings.Contains(r.stderr, "stage (a)") {
		t.Error("the re-run did stage (a) again")
	}
	now, _ := os.ReadFile(filepath.Join(pkiDir, certs.CABaseName+".crt"))
	onlyCA(t, members, now)
}

func stepRotateCAAborted(t *testing.T, s *story) {
	members := s.lab.Hosts[:3]
	pkiDir := filepath.Join(s.dir, "pki")
	before, _ := os.ReadFile(filepath.Join(pkiDir, certs.CABaseName+".crt"))
	w := s.rotationWriter(t)
	defer s.stopWriter(t, w)
	s.killAfterFirstStage(t)
	r := s.etcdadm(t, "certs", "rotate-ca", "-f", s.file, "--abort")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !strings.Contains(r.stdout, "rotation aborted") {
		t.Errorf("abort:\n%s", r.stdout)
	}
	if _, err := os.Stat(filepath.Join(pkiDir, certs.NewCABaseName+".crt")); !os.IsNotExist(err) {
		t.Errorf("the new CA is still in the PKI directory: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(pkiDir, certs.CABaseName+".crt"))
	if string(after) != string(before) {
		t.Error("the local CA changed")
	}
	onlyCA(t, members, before)
	if r := s.etcdadm(t, "apply", "-f", s.file); r.err != nil || !strings.Contains(r.stdout, "nothing to do") || !strings.Contains(r.stdout, "3/3 members healthy") {
		t.Errorf("apply after the abort: %v\n%s", r.err, r.stdout)
	}
}

func clientURLs(c *config.Cluster) []string {
	var out []string
	for _, h := range c.Spec.Hosts {
		out = append(out, manifests.ClientURL(h))
	}
	return out
}
