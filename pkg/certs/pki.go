package certs

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
	kubeadmapi "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm"
	"k8s.io/kubernetes/cmd/kubeadm/app/util/pkiutil"

	"github.com/etcdadm-io/etcdadm/internal/atomicfile"
	"github.com/etcdadm-io/etcdadm/internal/cores"
	"github.com/etcdadm-io/etcdadm/pkg/config"
)

// Backdate is how far before "now" certificates start, as in kubeadm, to
// tolerate small clock differences between hosts.
const Backdate = 5 * time.Minute

// Modes of the files, as kubeadm writes them.
const (
	CertMode fs.FileMode = 0o644
	KeyMode  fs.FileMode = 0o600
	// DirMode keeps the operator's PKI directory, which holds the CA key, private.
	DirMode fs.FileMode = 0o700
)

// Options tune Ensure.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// RenewBefore reissues a leaf certificate when less than this is left; 0
	// means the default, a quarter of the validity but at most 30 days.
	RenewBefore time.Duration
	// Renew reissues these leaf certificates (kubeadm names) on every host
	// whatever their state; "all" names them all.
	Renew []string
	// Hosts limits Renew to these hosts; empty means every host.
	Hosts []string
	// Issuer, when set, signs the leaves instead of the CA in the PKI
	// directory, and the leaves it did not issue are reissued (a CA rotation).
	Issuer *CA
}

// CA is a CA certificate with its key.
type CA struct {
	KeyPair
	key crypto.Signer
}

// Action says what Ensure did with a certificate.
type Action string

// Actions.
const (
	Created  Action = "created"
	Reused   Action = "reused"
	Reissued Action = "reissued"
)

// Event records what happened to one certificate and why.
type Event struct {
	Host   string // empty for the CA
	Name   string // kubeadm name
	Path   string // certificate path on the operator's machine
	Action Action
	Reason string
}

// KeyPair is a certificate with its key, parsed and PEM-encoded.
type KeyPair struct {
	Name     string
	BaseName string
	Cert     *x509.Certificate
	CertPEM  []byte
	KeyPEM   []byte
}

// PKI is the etcd PKI of a cluster, as held on the operator's machine, or
// as it would be once saved.
type PKI struct {
	Dir   string
	CA    KeyPair
	Hosts map[string][]KeyPair // by host name, in SpecsFor order
	// CACreated is set when spec.pki.dir holds no CA and Compute made one.
	CACreated bool
	// Trust is what the hosts' ca.crt holds, and HostCAKey the ca.key of
	// stacked hosts: the CA's own unless a rotation says otherwise.
	Trust, HostCAKey []byte
	// Known are the CAs the operator holds: the CA, and during a rotation
	// the other one.
	Known []*x509.Certificate
	caKey crypto.Signer
	// pending are the files Compute made that Save writes.
	pending []atomicfile.File
}

// Unsaved reports whether the PKI holds certificates spec.pki.dir does not have yet.
func (p *PKI) Unsaved() bool { return len(p.pending) > 0 }

// Save writes what Compute created or reissued into spec.pki.dir, atomically
// file by file, keys before their certificates. Nothing else is written,
// but the directory's .gitignore when Save creates the directory.
func (p *PKI) Save() error {
	if len(p.pending) == 0 {
		return nil
	}
	if err := makeDir(p.Dir); err != nil {
		return err
	}
	if err := atomicfile.WriteAll(p.pending, DirMode); err != nil {
		return err
	}
	p.pending = nil
	return nil
}

// Leaf returns a host's certificate by kubeadm name.
func (p *PKI) Leaf(host, name string) (KeyPair, bool) {
	for _, kp := range p.Hosts[host] {
		if kp.Name == name {
			return kp, true
		}
	}
	return KeyPair{}, false
}

// HostDir is where a host's leaf certificates live inside the operator's PKI directory.
func HostDir(pkiDir, host string) string {
	return filepath.Join(pkiDir, "hosts", host)
}

// Ensure makes the operator's PKI directory match the cluster: Compute, then
// Save. Nothing is written unless every check passed.
func Ensure(c *config.Cluster, opts Options) (*PKI, []Event, error) {
	p, events, err := Compute(c, opts)
	if err != nil {
		return nil, nil, err
	}
	if err := p.Save(); err != nil {
		return nil, nil, err
	}
	return p, events, nil
}

// Compute works out, in memory, the PKI the cluster needs from what the
// operator's PKI directory holds: the etcd CA there (a user's own is used as
// it is), or a new one if there is none; the leaf certificates there, or new
// ones where they are missing, not signed by the CA, missing a wanted SAN or
// near expiry. It writes nothing: Save does.
func Compute(c *config.Cluster, opts Options) (*PKI, []Event, error) {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	t := now().UTC()
	dir := c.PKIDir()
	var events []Event
	type pending struct {
		base string
		kp   KeyPair
	}
	var writes []pending

	ca, caKey, created, err := loadOrNewCA(c, dir, t)
	if err != nil {
		return nil, nil, err
	}
	if opts.Issuer != nil {
		ca, caKey, created = opts.Issuer.KeyPair, opts.Issuer.key, false
	}
	caEvent := Event{Name: EtcdCA, Path: filepath.Join(dir, CABaseName+".crt"), Action: Reused}
	if created {
		caEvent.Action, caEvent.Reason = Created, "no CA in "+dir
		writes = append(writes, pending{filepath.Join(dir, CABaseName), ca})
	}
	events = append(events, caEvent)

	p := &PKI{Dir: dir, CA: ca, Hosts: map[string][]KeyPair{}, CACreated: created, caKey: caKey,
		Trust: ca.CertPEM, HostCAKey: ca.KeyPEM, Known: []*x509.Certificate{ca.Cert}}
	type job struct {
		host  config.Host
		spec  Spec
		slot  *KeyPair
		write int
	}
	var jobs []job
	// The leaves there are read and checked (their signatures above all)
	// on every core first: that grows with the hosts too.
	type found struct {
		host   config.Host
		spec   Spec
		base   string
		kp     KeyPair
		reason string
		err    error
	}
	var existing []found
	for _, h := range c.AllHosts() {
		for _, spec := range SpecsFor(c, h.Name) {
			existing = append(existing, found{host: h, spec: spec, base: filepath.Join(HostDir(dir, h.Name), spec.BaseName)})
		}
	}
	cores.Each(len(existing), func(i int) {
		l := &existing[i]
		l.kp, l.reason, l.err = loadLeaf(l.base, l.spec, c, l.host, ca.Cert, t, opts)
	})
	for _, h := range c.AllHosts() {
		specs := SpecsFor(c, h.Name)
		leaves := make([]KeyPair, len(specs))
		for i, spec := range specs {
			l := existing[0]
			existing = existing[1:]
			base, kp, reason := l.base, l.kp, l.reason
			ev := Event{Host: h.Name, Name: spec.Name, Path: base + ".crt"}
			if l.err != nil {
				return nil, nil, l.err
			}
			if reason == "" {
				ev.Action = Reused
				leaves[i] = kp
			} else {
				ev.Action, ev.Reason = Reissued, reason
				if !fileExists(base+".crt") && !fileExists(base+".key") {
					ev.Action = Created
				}
				jobs = append(jobs, job{host: h, spec: spec, slot: &leaves[i], write: len(writes)})
				writes = append(writes, pending{base: base})
			}
			events = append(events, ev)
		}
		p.Hosts[h.Name] = leaves
	}
	// Key generation dominates; spread it over the machine's cores.
	errs := make([]error, len(jobs))
	cores.Each(len(jobs), func(i int) {
		j := jobs[i]
		kp, err := p.newLeaf(j.spec, c, j.host, t)
		if err != nil {
			errs[i] = fmt.Errorf("%s certificate for %s: %w", j.spec.Name, j.host.Name, err)
			return
		}
		*j.slot = kp
		writes[j.write].kp = kp
	})
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	for _, w := range writes {
		// The key before its certificate, as kubeadm does, so a certificate never lacks its key.
		p.pending = append(p.pending,
			atomicfile.File{Path: w.base + ".key", Data: w.kp.KeyPEM, Mode: KeyMode},
			atomicfile.File{Path: w.base + ".crt", Data: w.kp.CertPEM, Mode: CertMode})
	}
	return p, events, nil
}

// loadOrNewCA returns the CA in dir, or a new one when neither file exists.
func loadOrNewCA(c *config.Cluster, dir string, now time.Time) (KeyPair, crypto.Signer, bool, error) {
	kp, key, err := loadCA(filepath.Join(dir, CABaseName), now)
	if errors.Is(err, errNoCA) {
		ca, err := NewCA(c, now)
		return ca.KeyPair, ca.key, true, err
	}
	return kp, key, false, err
}

var errNoCA = errors.New("no CA")

// NewCA makes an etcd CA as kubeadm does.
func NewCA(c *config.Cluster, now time.Time) (CA, error) {
	cfg := &pkiutil.CertConfig{
		Config:              certutil.Config{CommonName: EtcdCA},
		NotAfter:            now.Add(c.CACertificateValidity()),
		EncryptionAlgorithm: kubeadmapi.EncryptionAlgorithmType(c.Spec.PKI.KeyAlgorithm),
	}
	cfg.NotBefore = now.Add(-Backdate)
	cert, key, err := pkiutil.NewCertificateAuthority(cfg)
	if err != nil {
		return CA{}, fmt.Errorf("create etcd CA: %w", err)
	}
	kp, err := encode(EtcdCA, CABaseName, cert, key)
	return CA{kp, key}, err
}

// loadCA reads a CA certificate and its key from base.crt and base.key;
// errNoCA when neither exists.
func loadCA(base string, now time.Time) (KeyPair, crypto.Signer, error) {
	certPath, keyPath := base+".crt", base+".key"
	certOK, keyOK := fileExists(certPath), fileExists(keyPath)
	switch {
	case !certOK && !keyOK:
		return KeyPair{}, nil, errNoCA
	case certOK && !keyOK:
		return KeyPair{}, nil, fmt.Errorf("%s has no key beside it: etcdadm signs member certificates with the CA key; put it at %s, or move the certificate away to let etcdadm create a new CA", certPath, keyPath)
	case !certOK && keyOK:
		return KeyPair{}, nil, fmt.Errorf("%s has no certificate beside it: put the CA certificate at %s, or move the key away to let etcdadm create a new CA", keyPath, certPath)
	}
	cert, certPEM, err := readCertPEM(certPath)
	if err != nil {
		return KeyPair{}, nil, err
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return KeyPair{}, nil, fmt.Errorf("%s (CN=%s) is not a CA certificate (it needs basicConstraints CA:TRUE and the keyCertSign usage); put the etcd CA there", certPath, cert.Subject.CommonName)
	}
	key, keyPEM, err := readKey(keyPath)
	if err != nil {
		return KeyPair{}, nil, err
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return KeyPair{}, nil, fmt.Errorf("%s does not match %s: the key belongs to another certificate; put the CA's own key there", keyPath, certPath)
	}
	if now.After(cert.NotAfter) {
		return KeyPair{}, nil, fmt.Errorf("the etcd CA %s expired on %s; rotate the CA", certPath, cert.NotAfter.Format(time.RFC3339))
	}
	kp, err := encode(EtcdCA, CABaseName, cert, key)
	if err != nil {
		return KeyPair{}, nil, err
	}
	// Keep the user's own PEM bytes: re-encoding could change a file nobody asked to change.
	kp.CertPEM, kp.KeyPEM = certPEM, keyPEM
	return kp, key, nil
}

// loadLeaf reads an existing leaf and says why it must be reissued ("" to reuse it).
func loadLeaf(base string, spec Spec, c *config.Cluster, h config.Host, ca *x509.Certificate, now time.Time, opts Options) (KeyPair, string, error) {
	if wantsRenewal(opts, spec.Name, h.Name) {
		return KeyPair{}, "renewal requested", nil
	}
	certPath, keyPath := base+".crt", base+".key"
	certOK, keyOK := fileExists(certPath), fileExists(keyPath)
	switch {
	case !certOK && !keyOK:
		return KeyPair{}, "missing", nil
	case !certOK:
		return KeyPair{}, "certificate missing beside its key", nil
	case !keyOK:
		return KeyPair{}, "key missing beside its certificate", nil
	}
	cert, certPEM, err := readCertPEM(certPath)
	if err != nil {
		return KeyPair{}, "unreadable certificate: " + err.Error(), nil
	}
	key, keyPEM, err := readKey(keyPath)
	if err != nil {
		return KeyPair{}, "unreadable key: " + err.Error(), nil
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return KeyPair{}, "key does not match the certificate", nil
	}
	if err := pkiutil.VerifyCertChain(cert, nil, ca); err != nil {
		return KeyPair{}, "not issued by the CA in use", nil
	}
	if want := spec.CommonName(h); cert.Subject.CommonName != want {
		return KeyPair{}, fmt.Sprintf("CN is %q, want %q", cert.Subject.CommonName, want), nil
	}
	if !sameUsages(cert.ExtKeyUsage, spec.Usages) {
		return KeyPair{}, "extended key usages differ from kubeadm's", nil
	}
	if missing := missingSANs(cert, spec.AltNames(c, h)); missing != "" {
		return KeyPair{}, "does not cover SAN " + missing, nil
	}
	validity := cert.NotAfter.Sub(cert.NotBefore)
	if left := cert.NotAfter.Sub(now); left < renewBefore(opts, validity) {
		if left <= 0 {
			return KeyPair{}, "expired on " + cert.NotAfter.Format(time.RFC3339), nil
		}
		return KeyPair{}, fmt.Sprintf("expires in %s", HumanDuration(left)), nil
	}
	return KeyPair{Name: spec.Name, BaseName: spec.BaseName, Cert: cert, CertPEM: certPEM, KeyPEM: keyPEM}, "", nil
}

func wantsRenewal(opts Options, name, host string) bool {
	if !slices.Contains(opts.Renew, name) && !slices.Contains(opts.Renew, "all") {
		return false
	}
	return len(opts.Hosts) == 0 || slices.Contains(opts.Hosts, host)
}

func renewBefore(opts Options, validity time.Duration) time.Duration {
	if opts.RenewBefore > 0 {
		return opts.RenewBefore
	}
	return min(validity/4, 30*24*time.Hour)
}

// newLeaf signs a new certificate with a new key, with kubeadm's pkiutil.
func (p *PKI) newLeaf(spec Spec, c *config.Cluster, h config.Host, now time.Time) (KeyPair, error) {
	cfg := &pkiutil.CertConfig{
		Config: certutil.Config{
			CommonName: spec.CommonName(h),
			AltNames:   spec.AltNames(c, h),
			Usages:     spec.Usages,
			NotBefore:  now.Add(-Backdate),
		},
		NotAfter:            now.Add(c.CertificateValidity()),
		EncryptionAlgorithm: kubeadmapi.EncryptionAlgorithmType(c.Spec.PKI.KeyAlgorithm),
	}
	cert, key, err := pkiutil.NewCertAndKey(p.CA.Cert, p.caKey, cfg)
	if err != nil {
		return KeyPair{}, err
	}
	return encode(spec.Name, spec.BaseName, cert, key)
}

func encode(name, base string, cert *x509.Certificate, key crypto.Signer) (KeyPair, error) {
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("encode %s key: %w", name, err)
	}
	return KeyPair{Name: name, BaseName: base, Cert: cert, CertPEM: pkiutil.EncodeCertPEM(cert), KeyPEM: keyPEM}, nil
}

func readCert(path string) (*x509.Certificate, error) {
	cert, _, err := readCertPEM(path)
	return cert, err
}

// readCertPEM reads the first certificate of a PEM file, and the file.
func readCertPEM(path string) (*x509.Certificate, []byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read certificate %s: %w", path, err)
	}
	certs, err := certutil.ParseCertsPEM(data)
	if err != nil {
		// certutil.CertsFromFile's words.
		return nil, nil, fmt.Errorf("read certificate %s: error reading %s: %s", path, path, err)
	}
	return certs[0], data, nil
}

// readKey reads a PEM private key, and the file.
func readKey(path string) (crypto.Signer, []byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read key %s: %w", path, err)
	}
	k, err := keyutil.ParsePrivateKeyPEM(data)
	if err != nil {
		// keyutil.PrivateKeyFromFile's words.
		return nil, nil, fmt.Errorf("read key %s: error reading private key file %s: %v", path, path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("key %s cannot sign: use an RSA or ECDSA key", path)
	}
	return s, data, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

func sameUsages(a, b []x509.ExtKeyUsage) bool {
	as, bs := slices.Clone(a), slices.Clone(b)
	slices.Sort(as)
	slices.Sort(bs)
	return slices.Equal(as, bs)
}

// missingSANs names the first wanted SAN the certificate does not carry.
func missingSANs(cert *x509.Certificate, want certutil.AltNames) string {
	for _, d := range want.DNSNames {
		if !slices.Contains(cert.DNSNames, d) {
			return d
		}
	}
	for _, ip := range want.IPs {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return ip.String()
		}
	}
	return ""
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}
