// Package parity checks etcdadm against kubeadm v1.37.2 itself: for the same
// kubeadmcfg.yaml, kubeadm's own certs and etcd phases (imported as Go
// packages) must make the same certificates and the same static Pod.
package parity

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	certutil "k8s.io/client-go/util/cert"
	kubeadmapi "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm"
	certsphase "k8s.io/kubernetes/cmd/kubeadm/app/phases/certs"
	etcdphase "k8s.io/kubernetes/cmd/kubeadm/app/phases/etcd"
	configutil "k8s.io/kubernetes/cmd/kubeadm/app/util/config"
	"sigs.k8s.io/yaml"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/pipeline"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
)

type parityCase struct {
	name      string
	inventory string
}

const header = `apiVersion: etcdadm/v1alpha1
kind: Cluster
metadata: {name: parity}
`

var cases = []parityCase{
	{"three-ipv4-hosts", header + `spec:
  hosts:
  - {name: infra0, address: 10.0.0.6}
  - {name: infra1, address: 10.0.0.7}
  - {name: infra2, address: 10.0.0.8}
`},
	{"ipv6-host", header + `spec:
  hosts:
  - {name: infra0, address: "fd00::6"}
  - {name: infra1, address: "fd00::7"}
  - {name: infra2, address: 10.0.0.8}
`},
	{"extra-sans", header + `spec:
  etcd:
    serverCertSANs: [etcd.example.com, "*.etcd.example.com", 192.0.2.10]
    peerCertSANs: [peers.example.com, "2001:db8::10"]
  hosts:
  - name: infra0
    address: 10.0.0.6
    serverCertSANs: [infra0.example.com, 198.51.100.6, etcd.example.com]
    peerCertSANs: [infra0-peer.example.com]
  - {name: infra1, address: 10.0.0.7}
  - {name: infra2, address: 10.0.0.8}
`},
	{"ecdsa-p256", header + `spec:
  pki: {keyAlgorithm: ECDSA-P256, certificateValidity: 2160h, caCertificateValidity: 43800h}
  hosts:
  - {name: infra0, address: 10.0.0.6}
  - {name: infra1, address: 10.0.0.7}
  - {name: infra2, address: 10.0.0.8}
`},
	{"kubernetes-v1.36", header + `spec:
  kubernetesVersion: v1.36.4
  hosts:
  - {name: infra0, address: 10.0.0.6}
  - {name: infra1, address: 10.0.0.7}
  - {name: infra2, address: 10.0.0.8}
`},
	{"image-overrides-and-extra-args", header + `spec:
  pki: {keyAlgorithm: RSA-3072}
  etcd:
    imageRepository: registry.example.com:5000/k8s
    imageTag: 3.7.0-1
    dataDir: /data/etcd
    extraArgs:
      quota-backend-bytes: "8589934592"
      listen-metrics-urls: https://0.0.0.0:2391
      auto-compaction-retention: "8"
  hosts:
  - {name: infra0, address: 10.0.0.6}
`},
	{"stacked-ecdsa-p384", header + `spec:
  topology: stacked
  pki: {keyAlgorithm: ECDSA-P384}
  hosts:
  - {name: cp0.example.com, address: 10.0.0.6}
  - {name: cp1.example.com, address: 10.0.0.7}
  - {name: cp2.example.com, address: 10.0.0.8}
`},
}

func TestParityWithKubeadm(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c, _, err := config.Parse([]byte(tc.inventory), tc.name, dir)
			if err != nil {
				t.Fatal(err)
			}
			p, pki, _, err := plan.Compute(c, pipeline.RuntimeFor(c), plan.Options{})
			if err != nil {
				t.Fatal(err)
			}

			kubeadmCA := kubeadmMadeCA(t, c)
			compareCert(t, "etcd-ca", pki.CA.Cert, kubeadmCA, nil)

			for _, h := range p.Hosts {
				t.Run(h.Name, func(t *testing.T) {
					cfg := loadWithKubeadm(t, fileOf(t, h, "/etc/kubernetes/kubeadmcfg.yaml"))
					kubeadmPKI := t.TempDir()
					writeFile(t, filepath.Join(kubeadmPKI, "etcd/ca.crt"), pki.CA.CertPEM, 0o644)
					writeFile(t, filepath.Join(kubeadmPKI, "etcd/ca.key"), pki.CA.KeyPEM, 0o600)
					cfg.CertificatesDir = kubeadmPKI
					for _, spec := range []*certsphase.KubeadmCert{
						certsphase.KubeadmCertEtcdServer(),
						certsphase.KubeadmCertEtcdPeer(),
						certsphase.KubeadmCertEtcdHealthcheck(),
						certsphase.KubeadmCertEtcdAPIClient(),
					} {
						if err := certsphase.CreateCertAndKeyFilesWithCA(spec, certsphase.KubeadmCertEtcdCA(), cfg); err != nil {
							t.Fatalf("kubeadm %s: %v", spec.Name, err)
						}
						theirs := readCert(t, filepath.Join(kubeadmPKI, spec.BaseName+".crt"))
						ours := parseCert(t, fileOf(t, h, "/etc/kubernetes/pki/"+spec.BaseName+".crt"))
						compareCert(t, spec.Name, ours, theirs, pki.CA.Cert)
						compareModes(t, h, kubeadmPKI, spec.BaseName)
					}
					compareManifest(t, c, h, cfg)
				})
			}
		})
	}
}

// loadWithKubeadm reads a kubeadmcfg.yaml with kubeadm's own loader, which
// defaults and validates it as `kubeadm init --config` does.
func loadWithKubeadm(t *testing.T, data []byte) *kubeadmapi.InitConfiguration {
	t.Helper()
	if err := configutil.ValidateConfig(data, false, false); err != nil {
		t.Fatalf("kubeadm config validate refuses kubeadmcfg.yaml: %v\n%s", err, data)
	}
	cfg, err := configutil.BytesToInitConfiguration(data, true)
	if err != nil {
		t.Fatalf("kubeadm cannot load kubeadmcfg.yaml: %v\n%s", err, data)
	}
	return cfg
}

func kubeadmMadeCA(t *testing.T, c *config.Cluster) *x509.Certificate {
	t.Helper()
	dir := t.TempDir()
	cfg := &kubeadmapi.InitConfiguration{}
	cfg.CertificatesDir = dir
	cfg.ClusterConfiguration.EncryptionAlgorithm = kubeadmapi.EncryptionAlgorithmType(c.Spec.PKI.KeyAlgorithm)
	cfg.ClusterConfiguration.CACertificateValidityPeriod = durationPtr(c.CACertificateValidity())
	cfg.ClusterConfiguration.CertificateValidityPeriod = durationPtr(c.CertificateValidity())
	if err := certsphase.CreateCACertAndKeyFiles(certsphase.KubeadmCertEtcdCA(), cfg); err != nil {
		t.Fatalf("kubeadm etcd-ca: %v", err)
	}
	return readCert(t, filepath.Join(dir, "etcd/ca.crt"))
}

// compareCert checks every field kubeadm decides. Serial numbers and keys are
// random, so only their shape is compared.
func compareCert(t *testing.T, name string, ours, theirs, ca *x509.Certificate) {
	t.Helper()
	type fields struct {
		Subject, Issuer       string
		DNSNames              []string
		IPs                   []string
		KeyUsage              x509.KeyUsage
		ExtKeyUsage           []x509.ExtKeyUsage
		IsCA, BasicConstraint bool
		Validity              time.Duration
		PublicKey             string
		SignatureAlgorithm    x509.SignatureAlgorithm
		HasSKID               bool
	}
	get := func(c *x509.Certificate) fields {
		var ips []string
		for _, ip := range c.IPAddresses {
			ips = append(ips, ip.String())
		}
		return fields{
			Subject: c.Subject.String(), Issuer: c.Issuer.String(),
			DNSNames: c.DNSNames, IPs: ips,
			KeyUsage: c.KeyUsage, ExtKeyUsage: c.ExtKeyUsage,
			IsCA: c.IsCA, BasicConstraint: c.BasicConstraintsValid,
			Validity:           c.NotAfter.Sub(c.NotBefore),
			PublicKey:          describeKey(c),
			SignatureAlgorithm: c.SignatureAlgorithm,
			HasSKID:            len(c.SubjectKeyId) > 0,
		}
	}
	if diff := cmp.Diff(get(theirs), get(ours)); diff != "" {
		t.Errorf("%s differs from kubeadm's (-kubeadm +etcdadm):\n%s", name, diff)
	}
	// kubeadm backdates by 5 minutes from its start; both were made moments apart.
	if d := ours.NotBefore.Sub(theirs.NotBefore); d > 10*time.Minute || d < -10*time.Minute {
		t.Errorf("%s NotBefore %s is far from kubeadm's %s", name, ours.NotBefore, theirs.NotBefore)
	}
	limit := new(big.Int).Lsh(big.NewInt(1), 63)
	if ours.SerialNumber.Sign() <= 0 || ours.SerialNumber.Cmp(limit) >= 0 {
		t.Errorf("%s serial %s is not in kubeadm's range [1, 2^63)", name, ours.SerialNumber)
	}
	if ca != nil && string(ours.AuthorityKeyId) != string(ca.SubjectKeyId) {
		t.Errorf("%s authority key ID does not name the CA", name)
	}
}

func describeKey(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA-" + k.Curve.Params().Name
	default:
		return fmt.Sprintf("%T", k)
	}
}

func compareModes(t *testing.T, h plan.Host, kubeadmPKI, base string) {
	t.Helper()
	for _, ext := range []string{".crt", ".key"} {
		st, err := os.Stat(filepath.Join(kubeadmPKI, base+ext))
		if err != nil {
			t.Fatal(err)
		}
		f := planFile(t, h, "/etc/kubernetes/pki/"+base+ext)
		if f.Mode.Perm() != st.Mode().Perm() {
			t.Errorf("%s%s mode %o, kubeadm writes %o", base, ext, f.Mode.Perm(), st.Mode().Perm())
		}
	}
}

// compareManifest runs `kubeadm init phase etcd local` on the same config
// and compares the static Pods: bytes, and objects for a readable diff.
func compareManifest(t *testing.T, c *config.Cluster, h plan.Host, cfg *kubeadmapi.InitConfiguration) {
	t.Helper()
	manifestDir := t.TempDir()
	cfg.CertificatesDir = "/etc/kubernetes/pki"
	if err := etcdphase.CreateLocalEtcdStaticPodManifestFile(manifestDir, "", cfg.NodeRegistration.Name, &cfg.ClusterConfiguration, &cfg.LocalAPIEndpoint, false); err != nil {
		t.Fatalf("kubeadm init phase etcd local: %v", err)
	}
	theirs, err := os.ReadFile(filepath.Join(manifestDir, "etcd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Join(manifestDir, "etcd.yaml"))
	ours := planFile(t, h, filepath.Join(c.Spec.Kubelet.StaticPodPath, "etcd.yaml"))
	if ours.Mode.Perm() != st.Mode().Perm() {
		t.Errorf("etcd.yaml mode %o, kubeadm writes %o", ours.Mode.Perm(), st.Mode().Perm())
	}
	var theirPod, ourPod corev1.Pod
	if err := yaml.UnmarshalStrict(theirs, &theirPod); err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(ours.Data, &ourPod); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(theirPod, ourPod); diff != "" {
		t.Errorf("static Pod differs from kubeadm's (-kubeadm +etcdadm):\n%s", diff)
	}
	if string(theirs) != string(ours.Data) {
		t.Errorf("static Pod bytes differ from kubeadm's:\n--- kubeadm\n%s\n--- etcdadm\n%s", theirs, ours.Data)
	}
	// The command must name every member, and the image follow the inventory.
	cmd := strings.Join(ourPod.Spec.Containers[0].Command, " ")
	for _, m := range c.Spec.Hosts {
		if !strings.Contains(cmd, m.Name+"=https://"+net.JoinHostPort(m.Address, "2380")) {
			t.Errorf("--initial-cluster misses %s: %s", m.Name, cmd)
		}
	}
	if got, want := ourPod.Spec.Containers[0].Image, c.EtcdImage(); got != want {
		t.Errorf("image %s, want %s", got, want)
	}
}

func fileOf(t *testing.T, h plan.Host, p string) []byte {
	t.Helper()
	return planFile(t, h, p).Data
}

func planFile(t *testing.T, h plan.Host, p string) plan.File {
	t.Helper()
	i := slices.IndexFunc(h.Files, func(f plan.File) bool { return f.Path == p })
	if i < 0 {
		t.Fatalf("%s has no %s in its plan", h.Name, p)
	}
	return h.Files[i]
}

func readCert(t *testing.T, p string) *x509.Certificate {
	t.Helper()
	cs, err := certutil.CertsFromFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return cs[0]
}

func parseCert(t *testing.T, pemBytes []byte) *x509.Certificate {
	t.Helper()
	cs, err := certutil.ParseCertsPEM(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return cs[0]
}

func writeFile(t *testing.T, p string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
}

func durationPtr(d time.Duration) *metav1.Duration {
	return &metav1.Duration{Duration: d}
}
