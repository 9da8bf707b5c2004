package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/atomicfile"
	"github.com/etcdadm-io/etcdadm/pkg/config"
)

// NewCABaseName is, in the operator's PKI directory during a CA rotation,
// the CA the cluster moves to; CABaseName stays the one it moves from until
// the rotation is done.
const NewCABaseName = "etcd/ca-new"

// Rotation is the operator's side of a CA rotation.
type Rotation struct {
	// Current is the CA the cluster moves from, New the one it moves to.
	Current, New CA
	// Created is set when StartRotation made the new CA.
	Created bool
}

// RotationInProgress reports whether a CA rotation was started and not
// finished or aborted.
func RotationInProgress(c *config.Cluster) bool {
	return fileExists(filepath.Join(c.PKIDir(), NewCABaseName+".crt")) || fileExists(filepath.Join(c.PKIDir(), NewCABaseName+".key"))
}

// LoadRotation reads both CAs of a rotation in progress; nil when there is none.
func LoadRotation(c *config.Cluster, now time.Time) (*Rotation, error) {
	if !RotationInProgress(c) {
		return nil, nil
	}
	dir := c.PKIDir()
	cur, curKey, err := loadCA(filepath.Join(dir, CABaseName), now)
	if err != nil {
		return nil, fmt.Errorf("the CA the rotation moves from: %w", noCA(err, dir))
	}
	next, nextKey, err := loadCA(filepath.Join(dir, NewCABaseName), now)
	if err != nil {
		return nil, fmt.Errorf("the CA the rotation moves to: %w", noCA(err, dir))
	}
	return &Rotation{Current: CA{cur, curKey}, New: CA{next, nextKey}}, nil
}

func noCA(err error, dir string) error {
	if errors.Is(err, errNoCA) {
		return fmt.Errorf("missing in %s", dir)
	}
	return err
}

// StartRotation makes a new CA for a rotation, in memory, unless one is in
// progress; Save writes it.
func StartRotation(c *config.Cluster, now time.Time) (*Rotation, error) {
	if r, err := LoadRotation(c, now); r != nil || err != nil {
		return r, err
	}
	cur, curKey, err := loadCA(filepath.Join(c.PKIDir(), CABaseName), now)
	if err != nil {
		return nil, fmt.Errorf("the CA to rotate: %w", noCA(err, c.PKIDir()))
	}
	next, err := NewCA(c, now)
	if err != nil {
		return nil, err
	}
	return &Rotation{Current: CA{cur, curKey}, New: next, Created: true}, nil
}

// Save writes the new CA a rotation made.
func (r *Rotation) Save(c *config.Cluster) error {
	if !r.Created {
		return nil
	}
	base := filepath.Join(c.PKIDir(), NewCABaseName)
	if err := atomicfile.WriteAll([]atomicfile.File{
		{Path: base + ".key", Data: r.New.KeyPEM, Mode: KeyMode},
		{Path: base + ".crt", Data: r.New.CertPEM, Mode: CertMode},
	}, DirMode); err != nil {
		return err
	}
	r.Created = false
	return nil
}

// Finish ends a rotation that moved the cluster to the new CA: the new CA
// becomes the CA, and the old one is kept under backup/ in the PKI directory.
func (r *Rotation) Finish(c *config.Cluster) (string, error) {
	dir := c.PKIDir()
	kept, err := keep(dir, CABaseName)
	if err != nil {
		return "", err
	}
	for _, ext := range []string{".key", ".crt"} {
		if err := os.Rename(filepath.Join(dir, NewCABaseName+ext), filepath.Join(dir, CABaseName+ext)); err != nil {
			return "", fmt.Errorf("make the new CA the CA: %w", err)
		}
	}
	return kept, nil
}

// Abort ends a rotation that moved the cluster back to its CA: the new CA
// is kept under backup/ in the PKI directory.
func (r *Rotation) Abort(c *config.Cluster) (string, error) {
	dir := c.PKIDir()
	kept, err := keep(dir, NewCABaseName)
	if err != nil {
		return "", err
	}
	for _, ext := range []string{".key", ".crt"} {
		if err := os.Remove(filepath.Join(dir, NewCABaseName+ext)); err != nil {
			return "", err
		}
	}
	return kept, nil
}

// keep copies base.crt and base.key under dir/backup/<time>/.
func keep(dir, base string) (string, error) {
	to := filepath.Join(dir, "backup", time.Now().UTC().Format("20060102T150405Z"))
	var files []atomicfile.File
	for _, f := range []struct {
		ext  string
		mode os.FileMode
	}{{".key", KeyMode}, {".crt", CertMode}} {
		data, err := os.ReadFile(filepath.Join(dir, base+f.ext))
		if err != nil {
			return "", err
		}
		files = append(files, atomicfile.File{Path: filepath.Join(to, base+f.ext), Data: data, Mode: f.mode})
	}
	if err := atomicfile.WriteAll(files, DirMode); err != nil {
		return "", err
	}
	return filepath.Join(to, base+".crt"), nil
}

// IssuedBy reports whether cert was signed by ca.
func IssuedBy(cert, ca *x509.Certificate) bool {
	return cert != nil && ca != nil && cert.CheckSignatureFrom(ca) == nil
}

// Bundle is a CA file holding first, then second: kubeadm takes the first
// certificate of ca.crt for the CA.
func Bundle(first, second KeyPair) []byte {
	return append(append([]byte(nil), first.CertPEM...), second.CertPEM...)
}

// ForRotation makes p what the hosts need at one stage of a rotation from
// other to target: the bundle they trust, the ca.key of stacked hosts (the
// target's, since kubeadm signs with the first CA of the bundle) and both
// CAs as known ones.
func (p *PKI) ForRotation(target, other CA, bundle bool) {
	p.Trust = target.CertPEM
	if bundle {
		p.Trust = Bundle(target.KeyPair, other.KeyPair)
	}
	p.HostCAKey = target.KeyPEM
	p.Known = []*x509.Certificate{target.Cert, other.Cert}
}
