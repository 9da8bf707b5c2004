package certs

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	certutil "k8s.io/client-go/util/cert"

	"github.com/etcdadm-io/etcdadm/pkg/config"
)

// Expiration describes one certificate: where it is, who issued it, what it
// names and when it expires.
type Expiration struct {
	// Host is the host the certificate was read on; "" for the local PKI.
	Host     string    `json:"host"`
	Name     string    `json:"name"`
	Path     string    `json:"path"`
	Subject  string    `json:"subject"`
	Issuer   string    `json:"issuer"`
	SANs     []string  `json:"sans"`
	NotAfter time.Time `json:"notAfter,omitzero"`
	Residual string    `json:"residual"`
	// DiffersFromLocal is set when a host's copy is not the local PKI's.
	DiffersFromLocal bool `json:"differsFromLocal"`
	// Problem is set when the certificate is missing or unreadable.
	Problem string `json:"problem,omitempty"`
}

// Kinds lists the etcd CA and every leaf, with their paths relative to a
// PKI directory (kubeadm's /etc/kubernetes/pki on a host).
func Kinds() []Spec {
	return append([]Spec{{Name: EtcdCA, BaseName: CABaseName}}, LeafSpecs()...)
}

// KindsFor lists the etcd CA and the leaves the named host gets.
func KindsFor(c *config.Cluster, host string) []Spec {
	return append([]Spec{{Name: EtcdCA, BaseName: CABaseName}}, SpecsFor(c, host)...)
}

// LocalPath is where the local PKI keeps a certificate of host h ("" for the CA).
func LocalPath(pkiDir, host string, spec Spec) string {
	if spec.Name == EtcdCA {
		return filepath.Join(pkiDir, CABaseName+".crt")
	}
	return filepath.Join(HostDir(pkiDir, host), spec.BaseName+".crt")
}

// CheckExpiration reads the operator's PKI directory and reports every
// certificate of the cluster, missing ones included, without changing anything.
func CheckExpiration(c *config.Cluster, now time.Time) []Expiration {
	dir := c.PKIDir()
	out := []Expiration{expirationOf(EtcdCA, LocalPath(dir, "", Spec{Name: EtcdCA}), now)}
	for _, h := range c.AllHosts() {
		for _, spec := range SpecsFor(c, h.Name) {
			out = append(out, expirationOf(spec.Name, LocalPath(dir, h.Name, spec), now))
		}
	}
	return out
}

func expirationOf(name, path string, now time.Time) Expiration {
	cert, err := readCert(path)
	if err != nil {
		return Missing("", name, path)
	}
	return ExpirationOf("", name, path, cert, now)
}

// Missing is the row of a certificate that is not there.
func Missing(host, name, path string) Expiration {
	return Expiration{Host: host, Name: name, Path: path, Residual: "<missing>", Problem: "missing or unreadable", SANs: []string{}}
}

// ExpirationOf is the row of a parsed certificate.
func ExpirationOf(host, name, path string, cert *x509.Certificate, now time.Time) Expiration {
	e := Expiration{
		Host: host, Name: name, Path: path,
		Subject: cert.Subject.String(), Issuer: cert.Issuer.String(),
		NotAfter: cert.NotAfter.UTC(), Residual: Residual(cert.NotAfter, now), SANs: []string{},
	}
	e.SANs = append(e.SANs, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		e.SANs = append(e.SANs, ip.String())
	}
	return e
}

// ParseCert reads the first certificate of PEM data.
func ParseCert(data []byte) (*x509.Certificate, error) {
	certs, err := certutil.ParseCertsPEM(data)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// ExpiresWithin reports whether the certificate expires before now+d.
func (e Expiration) ExpiresWithin(now time.Time, d time.Duration) bool {
	return !e.NotAfter.IsZero() && e.NotAfter.Before(now.Add(d))
}

// Residual is the time left, kubeadm style: "<invalid>" once expired.
func Residual(notAfter, now time.Time) string {
	left := notAfter.Sub(now)
	if left <= 0 {
		return "<invalid>"
	}
	return HumanDuration(left)
}

// HumanDuration prints a duration the way kubectl and kubeadm do: 364d, 9y, 23h.
func HumanDuration(d time.Duration) string {
	switch {
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 3*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	case d < 2*365*24*time.Hour:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	default:
		return fmt.Sprintf("%dy", int(d.Hours()/24/365))
	}
}

// WriteExpirationTable prints rows as an aligned table.
func WriteExpirationTable(w io.Writer, rows []Expiration) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tCERTIFICATE\tEXPIRES\tRESIDUAL TIME\tISSUER\tSANS\tDIFFERS FROM LOCAL\tPATH")
	for _, r := range rows {
		host, expires, issuer, sans, differs := r.Host, "-", r.Issuer, strings.Join(r.SANs, ","), "-"
		if host == "" {
			host = "(local)"
		}
		if issuer == "" {
			issuer = "-"
		}
		if sans == "" {
			sans = "-"
		}
		if r.Host != "" && r.Problem == "" {
			differs = "no"
			if r.DiffersFromLocal {
				differs = "yes"
			}
		}
		if !r.NotAfter.IsZero() {
			expires = r.NotAfter.Format("Jan 02, 2006 15:04 UTC")
		}
		residual := r.Residual
		if r.Problem != "" && r.Residual != "<missing>" {
			residual = r.Problem
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", host, r.Name, expires, residual, issuer, sans, differs, r.Path)
	}
	return tw.Flush()
}

// WriteExpirationJSON prints rows as a JSON array.
func WriteExpirationJSON(w io.Writer, rows []Expiration) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rows)
}
