package certs

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/etcdadm-io/etcdadm/pkg/config"
)

// Expiration describes when one certificate expires.
type Expiration struct {
	Host      string    `json:"host,omitempty"`
	Name      string    `json:"name"`
	Path      string    `json:"path"`
	Subject   string    `json:"subject,omitempty"`
	NotAfter  time.Time `json:"notAfter,omitzero"`
	Residual  string    `json:"residual"`
	Authority string    `json:"authority,omitempty"`
	// Problem is set when the certificate is missing or unreadable.
	Problem string `json:"problem,omitempty"`
}

// CheckExpiration reads the operator's PKI directory and reports every
// certificate of the cluster, missing ones included, without changing anything.
func CheckExpiration(c *config.Cluster, now time.Time) []Expiration {
	dir := c.PKIDir()
	out := []Expiration{expirationOf("", EtcdCA, filepath.Join(dir, CABaseName+".crt"), "", now)}
	for _, h := range c.Spec.Hosts {
		for _, spec := range LeafSpecs() {
			path := filepath.Join(HostDir(dir, h.Name), spec.BaseName+".crt")
			out = append(out, expirationOf(h.Name, spec.Name, path, EtcdCA, now))
		}
	}
	return out
}

func expirationOf(host, name, path, authority string, now time.Time) Expiration {
	e := Expiration{Host: host, Name: name, Path: path, Authority: authority}
	cert, err := readCert(path)
	if err != nil {
		e.Problem = "missing or unreadable"
		e.Residual = "<missing>"
		return e
	}
	return ExpirationOf(host, name, path, authority, cert.Subject.CommonName, cert.NotAfter, now)
}

// ExpirationOf builds a row for a certificate read elsewhere (on a host, say).
func ExpirationOf(host, name, path, authority, subject string, notAfter, now time.Time) Expiration {
	return Expiration{
		Host: host, Name: name, Path: path, Authority: authority,
		Subject: "CN=" + subject, NotAfter: notAfter.UTC(), Residual: Residual(notAfter, now),
	}
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
	fmt.Fprintln(tw, "HOST\tCERTIFICATE\tEXPIRES\tRESIDUAL TIME\tCERTIFICATE AUTHORITY\tPATH")
	for _, r := range rows {
		host, expires, ca := r.Host, "-", r.Authority
		if host == "" {
			host = "-"
		}
		if ca == "" {
			ca = "-"
		}
		if !r.NotAfter.IsZero() {
			expires = r.NotAfter.Format("Jan 02, 2006 15:04 UTC")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", host, r.Name, expires, r.Residual, ca, r.Path)
	}
	return tw.Flush()
}

// WriteExpirationJSON prints rows as a JSON array.
func WriteExpirationJSON(w io.Writer, rows []Expiration) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rows)
}
