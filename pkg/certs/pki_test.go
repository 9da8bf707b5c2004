package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
	"k8s.io/kubernetes/cmd/kubeadm/app/util/pkiutil"

	"github.com/etcdadm-io/etcdadm/pkg/config"
)

func cluster(t *testing.T, dir, hosts string) *config.Cluster {
	t.Helper()
	inv := "apiVersion: etcdadm/v1alpha1\nkind: Cluster\nmetadata: {name: test}\nspec:\n  pki: {keyAlgorithm: ECDSA-P256}\n  hosts:\n" + hosts
	c, _, err := config.Parse([]byte(inv), "test", dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const threeHosts = `  - {name: infra0, address: 10.0.0.6}
  - {name: infra1, address: 10.0.0.7}
  - {name: infra2, address: 10.0.0.8}
`

// snapshot maps every file under dir to its content.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[strings.TrimPrefix(p, dir)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func changed(before, after map[string]string) []string {
	var out []string
	for k, v := range after {
		if before[k] != v {
			out = append(out, k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			out = append(out, k+" (removed)")
		}
	}
	return out
}

func TestEnsureCreatesThenReusesEverything(t *testing.T) {
	dir := t.TempDir()
	c := cluster(t, dir, threeHosts)
	p, events, err := Ensure(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1+3*4 {
		t.Fatalf("%d events, want 13", len(events))
	}
	for _, e := range events {
		if e.Action != Created {
			t.Errorf("%s %s: %s, want created", e.Host, e.Name, e.Action)
		}
	}
	for host, leaves := range p.Hosts {
		for _, kp := range leaves {
			if err := pkiutil.VerifyCertChain(kp.Cert, nil, p.CA.Cert); err != nil {
				t.Errorf("%s %s not signed by the CA: %v", host, kp.Name, err)
			}
		}
	}
	for _, f := range []string{"etcd/ca.key", "hosts/infra1/etcd/peer.key", "hosts/infra2/apiserver-etcd-client.key"} {
		st, err := os.Stat(filepath.Join(c.PKIDir(), f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, err %v; want 0600", f, st.Mode(), err)
		}
	}
	st, _ := os.Stat(c.PKIDir())
	if st.Mode().Perm() != 0o700 {
		t.Errorf("pki dir mode %o, want 0700: it holds the CA key", st.Mode().Perm())
	}

	before := snapshot(t, c.PKIDir())
	_, events, err = Ensure(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if e.Action != Reused {
			t.Errorf("re-run: %s %s %s (%s)", e.Host, e.Name, e.Action, e.Reason)
		}
	}
	if ch := changed(before, snapshot(t, c.PKIDir())); len(ch) > 0 {
		t.Errorf("re-run changed files: %v", ch)
	}
}

func TestAddressChangeReissuesOnlyThatHostsServerAndPeer(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := Ensure(cluster(t, dir, threeHosts), Options{}); err != nil {
		t.Fatal(err)
	}
	c := cluster(t, dir, strings.Replace(threeHosts, "10.0.0.7", "10.0.0.17", 1))
	before := snapshot(t, c.PKIDir())
	p, events, err := Ensure(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := changed(before, snapshot(t, c.PKIDir()))
	want := map[string]bool{
		"/hosts/infra1/etcd/server.crt": true, "/hosts/infra1/etcd/server.key": true,
		"/hosts/infra1/etcd/peer.crt": true, "/hosts/infra1/etcd/peer.key": true,
	}
	if len(got) != len(want) {
		t.Errorf("changed %v, want exactly infra1's server and peer files", got)
	}
	for _, f := range got {
		if !want[f] {
			t.Errorf("%s changed", f)
		}
	}
	for _, e := range events {
		if e.Action == Reissued && e.Reason != "does not cover SAN 10.0.0.17" {
			t.Errorf("reason %q", e.Reason)
		}
	}
	server := p.Hosts["infra1"][0].Cert
	if server.IPAddresses[0].String() != "10.0.0.17" {
		t.Errorf("new server cert IPs %v", server.IPAddresses)
	}
}

func TestNewSANReissuesServerOnly(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := Ensure(cluster(t, dir, threeHosts), Options{}); err != nil {
		t.Fatal(err)
	}
	c := cluster(t, dir, strings.Replace(threeHosts, "address: 10.0.0.6}", "address: 10.0.0.6, serverCertSANs: [etcd0.example.com]}", 1))
	_, events, err := Ensure(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var reissued []string
	for _, e := range events {
		if e.Action != Reused {
			reissued = append(reissued, e.Host+"/"+e.Name)
		}
	}
	if len(reissued) != 1 || reissued[0] != "infra0/etcd-server" {
		t.Errorf("reissued %v, want only infra0/etcd-server", reissued)
	}
}

func TestNearExpiryAndForeignCertificatesAreReissued(t *testing.T) {
	dir := t.TempDir()
	c := cluster(t, dir, "  - {name: infra0, address: 10.0.0.6}\n")
	if _, _, err := Ensure(c, Options{}); err != nil {
		t.Fatal(err)
	}
	// 360 days later the one-year certificates are inside the 30-day window.
	later := func() time.Time { return time.Now().Add(360 * 24 * time.Hour) }
	_, events, err := Ensure(c, Options{Now: later})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events[1:] {
		if e.Action != Reissued || !strings.HasPrefix(e.Reason, "expires in ") {
			t.Errorf("%s: %s (%s), want reissued for expiry", e.Name, e.Action, e.Reason)
		}
	}

	// A certificate signed by another CA is replaced.
	otherCA, otherKey := newCA(t, "other-ca", ecdsaKey(t))
	foreign, foreignKey, err := pkiutil.NewCertAndKey(otherCA, otherKey.(crypto.Signer), &pkiutil.CertConfig{
		Config: certCfg("infra0"), EncryptionAlgorithm: "ECDSA-P256"})
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(HostDir(c.PKIDir(), "infra0"), "etcd/server")
	writePair(t, base, foreign, foreignKey)
	_, events, err = Ensure(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if e := events[1]; e.Name != EtcdServer || e.Action != Reissued || e.Reason != "not issued by the CA in use" {
		t.Errorf("foreign server cert: %+v", e)
	}

	// A key that does not belong to the certificate is replaced too.
	keyPEM, _ := keyutil.MarshalPrivateKeyToPEM(ecdsaKey(t))
	if err := os.WriteFile(base+".key", keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	_, events, err = Ensure(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if e := events[1]; e.Action != Reissued || e.Reason != "key does not match the certificate" {
		t.Errorf("mismatched key: %+v", e)
	}
}

func TestRenewRequested(t *testing.T) {
	dir := t.TempDir()
	c := cluster(t, dir, threeHosts)
	if _, _, err := Ensure(c, Options{}); err != nil {
		t.Fatal(err)
	}
	_, events, err := Ensure(c, Options{Renew: []string{EtcdPeer}, Hosts: []string{"infra2"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		wantRenewed := e.Host == "infra2" && e.Name == EtcdPeer
		if (e.Action == Reissued) != wantRenewed {
			t.Errorf("%s %s: %s", e.Host, e.Name, e.Action)
		}
	}
}

func TestUserSuppliedCAIsUsedAsIs(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  func(*testing.T) any
	}{
		{"rsa", func(t *testing.T) any { return rsaKey(t) }},
		{"ecdsa", func(t *testing.T) any { return ecdsaKey(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := cluster(t, dir, threeHosts)
			key := tc.key(t)
			ca, _ := newCA(t, "my-corp-etcd-ca", key)
			writePair(t, filepath.Join(c.PKIDir(), CABaseName), ca, key)
			before := snapshot(t, c.PKIDir())
			p, events, err := Ensure(c, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if events[0].Action != Reused || p.CA.Cert.Subject.CommonName != "my-corp-etcd-ca" {
				t.Errorf("CA event %+v, CN %s", events[0], p.CA.Cert.Subject.CommonName)
			}
			after := snapshot(t, c.PKIDir())
			for _, f := range []string{"/etcd/ca.crt", "/etcd/ca.key"} {
				if before[f] != after[f] {
					t.Errorf("%s was rewritten", f)
				}
			}
			for _, kp := range p.Hosts["infra0"] {
				if err := pkiutil.VerifyCertChain(kp.Cert, nil, ca); err != nil {
					t.Errorf("%s not signed by the user's CA: %v", kp.Name, err)
				}
			}
		})
	}
}

func TestBadCAsAreRefusedWithoutWriting(t *testing.T) {
	key := ecdsaKey(t)
	ca, _ := newCA(t, "etcd-ca", key)
	leafKey := ecdsaKey(t)
	leaf, _, err := pkiutil.NewCertAndKey(ca, key, &pkiutil.CertConfig{Config: certCfg("x"), EncryptionAlgorithm: "ECDSA-P256"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, base string)
		wantErr string
	}{
		{"certificate without key", func(t *testing.T, base string) {
			writeCert(t, base+".crt", ca)
		}, "has no key beside it"},
		{"key without certificate", func(t *testing.T, base string) {
			writeKey(t, base+".key", key)
		}, "has no certificate beside it"},
		{"key of another certificate", func(t *testing.T, base string) {
			writePair(t, base, ca, ecdsaKey(t))
		}, "does not match"},
		{"not a CA", func(t *testing.T, base string) {
			writePair(t, base, leaf, leafKey)
		}, "is not a CA certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := cluster(t, dir, threeHosts)
			tc.setup(t, filepath.Join(c.PKIDir(), CABaseName))
			before := snapshot(t, c.PKIDir())
			_, _, err := Ensure(c, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to say %q", err, tc.wantErr)
			}
			if ch := changed(before, snapshot(t, c.PKIDir())); len(ch) > 0 {
				t.Errorf("refused CA but wrote %v", ch)
			}
		})
	}
}

func TestCheckExpirationReportsMissing(t *testing.T) {
	dir := t.TempDir()
	c := cluster(t, dir, threeHosts)
	rows := CheckExpiration(c, time.Now())
	if len(rows) != 13 || rows[0].Residual != "<missing>" {
		t.Fatalf("rows %+v", rows)
	}
	if _, _, err := Ensure(c, Options{}); err != nil {
		t.Fatal(err)
	}
	rows = CheckExpiration(c, time.Now())
	if rows[0].Residual != "9y" || rows[1].Residual != "364d" || rows[1].Issuer != "CN=etcd-ca" || rows[1].Host != "" {
		t.Errorf("rows %+v", rows[:2])
	}
	if !slices.Contains(rows[1].SANs, "infra0") || !slices.Contains(rows[1].SANs, "127.0.0.1") || !strings.Contains(rows[1].Path, filepath.Join("hosts", "infra0")) {
		t.Errorf("server certificate row %+v", rows[1])
	}
	if rows[1].ExpiresWithin(time.Now(), 300*24*time.Hour) || !rows[1].ExpiresWithin(time.Now(), 400*24*time.Hour) {
		t.Errorf("ExpiresWithin is wrong for %s", rows[1].NotAfter)
	}
	rows = CheckExpiration(c, time.Now().Add(2*365*24*time.Hour))
	if rows[1].Residual != "<invalid>" {
		t.Errorf("expired residual %q", rows[1].Residual)
	}
}

func newCA(t *testing.T, cn string, key any) (*x509.Certificate, any) {
	t.Helper()
	signer := key.(crypto.Signer)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(5 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func rsaKey(t *testing.T) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ecdsaKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func certCfg(cn string) certutil.Config {
	return certutil.Config{CommonName: cn, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
}

func writePair(t *testing.T, base string, cert *x509.Certificate, key any) {
	t.Helper()
	writeKey(t, base+".key", key)
	writeCert(t, base+".crt", cert)
}

func writeCert(t *testing.T, p string, cert *x509.Certificate) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, pkiutil.EncodeCertPEM(cert), 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeKey(t *testing.T, p string, key any) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := keyutil.MarshalPrivateKeyToPEM(key.(crypto.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Two runs cannot hold the PKI at once; taking the lock writes nothing.
func TestLockExcludesASecondRunAndCreatesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	release, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the lock created %s: %v", dir, err)
	}
	if _, err := Lock(dir); err == nil || !strings.Contains(err.Error(), "another etcdadm run") {
		t.Errorf("second lock: %v", err)
	}
	release()
	again, err := Lock(dir)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	again()
}
