// Package certs makes and checks the etcd PKI exactly as kubeadm v1.37 does:
// the etcd CA and, per host, the etcd server, peer and healthcheck-client
// certificates and the apiserver-etcd-client certificate.
// It owns the PKI on this machine (spec.pki.dir) and is a leaf: it imports
// nothing that plans, reaches a host or runs.
package certs

import (
	"crypto/x509"
	"net"

	certutil "k8s.io/client-go/util/cert"

	"github.com/etcdadm-io/etcdadm/pkg/config"
)

// Certificate names, as kubeadm's `init phase certs` and `certs renew` spell them.
const (
	EtcdCA                = "etcd-ca"
	EtcdServer            = "etcd-server"
	EtcdPeer              = "etcd-peer"
	EtcdHealthcheckClient = "etcd-healthcheck-client"
	APIServerEtcdClient   = "apiserver-etcd-client"
)

// CABaseName is the CA's path, without extension, relative to a PKI directory.
const CABaseName = "etcd/ca"

// Spec describes one leaf certificate the way kubeadm's certificate list does.
type Spec struct {
	// Name is kubeadm's name for the certificate.
	Name string
	// BaseName is the path without extension relative to the PKI directory.
	BaseName string
	// Usages are the extended key usages.
	Usages []x509.ExtKeyUsage
	// commonName is fixed, or empty for the node name.
	commonName string
	// sans picks the inventory's extra SANs for this certificate; nil for none.
	sans func(c *config.Cluster, h config.Host) []string
}

// LeafSpecs lists, in kubeadm's order, the certificates every member gets.
func LeafSpecs() []Spec {
	serverAndClient := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	return []Spec{
		{
			Name:     EtcdServer,
			BaseName: "etcd/server",
			// etcd requires ClientAuth on its serving certificate too (etcd issue 9785).
			Usages: serverAndClient,
			sans:   ServerCertSANs,
		},
		{
			Name:     EtcdPeer,
			BaseName: "etcd/peer",
			Usages:   serverAndClient,
			sans:     PeerCertSANs,
		},
		{
			Name:       EtcdHealthcheckClient,
			BaseName:   "etcd/healthcheck-client",
			Usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			commonName: "kube-etcd-healthcheck-client",
		},
		{
			Name:       APIServerEtcdClient,
			BaseName:   "apiserver-etcd-client",
			Usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			commonName: "kube-apiserver-etcd-client",
		},
	}
}

// ControlPlaneSpecs lists the certificates a control-plane host of an
// external cluster gets: its kube-apiserver's client certificate, the one
// every member gets too.
func ControlPlaneSpecs() []Spec {
	spec, _ := SpecByName(APIServerEtcdClient)
	return []Spec{spec}
}

// SpecsFor lists the leaves the named host gets: a control-plane host's,
// or every member's.
func SpecsFor(c *config.Cluster, host string) []Spec {
	if c.IsControlPlaneHost(host) {
		return ControlPlaneSpecs()
	}
	return LeafSpecs()
}

// SpecByName returns the leaf spec with kubeadm's name.
func SpecByName(name string) (Spec, bool) {
	for _, s := range LeafSpecs() {
		if s.Name == name {
			return s, true
		}
	}
	return Spec{}, false
}

// CommonName is the certificate's CN for host h.
func (s Spec) CommonName(h config.Host) string {
	if s.commonName != "" {
		return s.commonName
	}
	return h.Name
}

// AltNames are the SANs kubeadm puts in the certificate for host h: for server
// and peer certificates the node name, localhost, the advertise address and
// both loopback addresses, then the inventory's extra SANs; none for clients.
func (s Spec) AltNames(c *config.Cluster, h config.Host) certutil.AltNames {
	if s.sans == nil {
		return certutil.AltNames{}
	}
	alt := certutil.AltNames{
		DNSNames: []string{h.Name, "localhost"},
		IPs:      []net.IP{net.ParseIP(h.Address), net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, san := range s.sans(c, h) {
		if ip := net.ParseIP(san); ip != nil {
			alt.IPs = append(alt.IPs, ip)
		} else {
			alt.DNSNames = append(alt.DNSNames, san)
		}
	}
	return alt
}

// ServerCertSANs are the extra server SANs for a host: the cluster's, then the host's.
func ServerCertSANs(c *config.Cluster, h config.Host) []string {
	return appendUnique(c.Spec.Etcd.ServerCertSANs, h.ServerCertSANs)
}

// PeerCertSANs are the extra peer SANs for a host: the cluster's, then the host's.
func PeerCertSANs(c *config.Cluster, h config.Host) []string {
	return appendUnique(c.Spec.Etcd.PeerCertSANs, h.PeerCertSANs)
}

func appendUnique(a, b []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range append(append([]string(nil), a...), b...) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
