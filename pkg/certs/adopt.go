package certs

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
	"k8s.io/kubernetes/cmd/kubeadm/app/util/pkiutil"

	"github.com/etcdadm-io/etcdadm/internal/atomicfile"
	"github.com/etcdadm-io/etcdadm/pkg/config"
)

// Files are a certificate and its key as PEM, and where they were read.
type Files struct {
	CertPEM, KeyPEM []byte
	// CertPath and KeyPath name them in messages (host and path).
	CertPath, KeyPath string
}

// Adopted is the PKI of a running cluster, taken as it is from its hosts:
// the CA with its key and each host's leaves, by kubeadm name, laid out
// in spec.pki.dir as Compute would lay it out. Nothing is reissued; a
// leaf a host lacks is left to Compute. Nothing is written until Save.
//
// A CA already in spec.pki.dir is accepted only when it is the same one;
// any leaf there is replaced by the host's.
func Adopted(c *config.Cluster, ca Files, leaves map[string]map[string]Files, now time.Time) (*PKI, error) {
	dir := c.PKIDir()
	caKP, caKey, err := parsePair(EtcdCA, CABaseName, ca)
	if err != nil {
		return nil, err
	}
	if !caKP.Cert.IsCA || !caKP.Cert.BasicConstraintsValid || caKP.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s (CN=%s) is not a CA certificate", ca.CertPath, caKP.Cert.Subject.CommonName)
	}
	if now.After(caKP.Cert.NotAfter) {
		return nil, fmt.Errorf("the etcd CA %s expired on %s: rotate it before adopting the cluster", ca.CertPath, caKP.Cert.NotAfter.Format(time.RFC3339))
	}
	if fileExists(filepath.Join(dir, CABaseName+".crt")) || fileExists(filepath.Join(dir, CABaseName+".key")) {
		local, _, err := loadCA(filepath.Join(dir, CABaseName), now)
		if err != nil {
			return nil, fmt.Errorf("spec.pki.dir %s: %w", dir, err)
		}
		if !bytes.Equal(local.Cert.Raw, caKP.Cert.Raw) {
			return nil, fmt.Errorf("spec.pki.dir %s already holds another etcd CA than the hosts' (%s): move that directory away, or point spec.pki.dir at a new one", dir, ca.CertPath)
		}
	}
	p := &PKI{Dir: dir, CA: caKP, Hosts: map[string][]KeyPair{}, caKey: caKey,
		Trust: caKP.CertPEM, HostCAKey: caKP.KeyPEM, Known: []*x509.Certificate{caKP.Cert}}
	p.pending = append(p.pending,
		atomicfile.File{Path: filepath.Join(dir, CABaseName+".key"), Data: caKP.KeyPEM, Mode: KeyMode},
		atomicfile.File{Path: filepath.Join(dir, CABaseName+".crt"), Data: caKP.CertPEM, Mode: CertMode})
	for _, h := range c.AllHosts() {
		for _, spec := range SpecsFor(c, h.Name) {
			f, ok := leaves[h.Name][spec.Name]
			if !ok {
				continue
			}
			kp, _, err := parsePair(spec.Name, spec.BaseName, f)
			if err != nil {
				return nil, err
			}
			if err := pkiutil.VerifyCertChain(kp.Cert, nil, caKP.Cert); err != nil {
				return nil, fmt.Errorf("%s was not issued by the etcd CA %s: %v", f.CertPath, ca.CertPath, err)
			}
			p.Hosts[h.Name] = append(p.Hosts[h.Name], kp)
			base := filepath.Join(HostDir(dir, h.Name), spec.BaseName)
			p.pending = append(p.pending,
				atomicfile.File{Path: base + ".key", Data: kp.KeyPEM, Mode: KeyMode},
				atomicfile.File{Path: base + ".crt", Data: kp.CertPEM, Mode: CertMode})
		}
	}
	return p, nil
}

// parsePair reads a certificate and its key, keeping their bytes.
func parsePair(name, base string, f Files) (KeyPair, crypto.Signer, error) {
	certs, err := certutil.ParseCertsPEM(f.CertPEM)
	if err != nil {
		return KeyPair{}, nil, fmt.Errorf("%s: %w", f.CertPath, err)
	}
	cert := certs[0]
	k, err := keyutil.ParsePrivateKeyPEM(f.KeyPEM)
	if err != nil {
		return KeyPair{}, nil, fmt.Errorf("%s: %w", f.KeyPath, err)
	}
	key, ok := k.(crypto.Signer)
	if !ok {
		return KeyPair{}, nil, fmt.Errorf("%s cannot sign: an RSA or ECDSA key is needed", f.KeyPath)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return KeyPair{}, nil, fmt.Errorf("%s does not match %s: the key belongs to another certificate", f.KeyPath, f.CertPath)
	}
	return KeyPair{Name: name, BaseName: base, Cert: cert, CertPEM: f.CertPEM, KeyPEM: f.KeyPEM}, key, nil
}

// CheckPair says whether f's key goes with its certificate.
func CheckPair(f Files) error {
	_, _, err := parsePair("", "", f)
	return err
}
