package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Defaults, as kubeadm v1.37 and its HA-etcd guide use them.
const (
	DefaultKubernetesVersion        = "v1.37.2"
	DefaultKubeadmAPIVersion        = "v1beta4"
	DefaultImageRepository          = "registry.k8s.io"
	DefaultDataDir                  = "/var/lib/etcd"
	DefaultPKIDir                   = "pki"
	DefaultCertificateValidity      = "8760h"
	DefaultCACertificateValidity    = "87600h"
	DefaultCgroupDriver             = "systemd"
	DefaultContainerRuntimeEndpoint = "unix:///var/run/containerd/containerd.sock"
	DefaultStaticPodPath            = "/etc/kubernetes/manifests"
	// DefaultSSHUser logs in when neither the inventory nor ~/.ssh/config names a user.
	DefaultSSHUser = "root"
)

// SetDefaults fills every empty field with its default.
func SetDefaults(c *Cluster) {
	s := &c.Spec
	setString(&c.APIVersion, APIVersion)
	setString(&c.Kind, Kind)
	if s.Topology == "" {
		s.Topology = TopologyExternal
	}
	setString(&s.KubernetesVersion, DefaultKubernetesVersion)
	setString(&s.KubeadmAPIVersion, DefaultKubeadmAPIVersion)
	setString(&s.Etcd.ImageRepository, DefaultImageRepository)
	setString(&s.Etcd.DataDir, DefaultDataDir)
	if s.Etcd.Runtime == "" {
		s.Etcd.Runtime = RuntimeKubelet
	}
	setString(&s.PKI.Dir, DefaultPKIDir)
	if s.PKI.KeyAlgorithm == "" {
		s.PKI.KeyAlgorithm = RSA2048
	}
	setString(&s.PKI.CertificateValidity, DefaultCertificateValidity)
	setString(&s.PKI.CACertificateValidity, DefaultCACertificateValidity)
	setString(&s.Kubelet.CgroupDriver, DefaultCgroupDriver)
	setString(&s.Kubelet.ContainerRuntimeEndpoint, DefaultContainerRuntimeEndpoint)
	setString(&s.Kubelet.StaticPodPath, DefaultStaticPodPath)
	defaultBackup(s.Backup)
	// spec.ssh.user, port and knownHostsFile stay empty when unset, so that
	// ~/.ssh/config can supply them before etcdadm's defaults do.
}

func setString(p *string, def string) {
	if *p == "" {
		*p = def
	}
}

// PKIDir is the absolute path of the operator's PKI directory.
func (c *Cluster) PKIDir() string {
	return c.ResolvePath(c.Spec.PKI.Dir)
}

// ResolvePath expands a leading ~ and makes a relative path absolute against
// the inventory's directory.
func (c *Cluster) ResolvePath(p string) string {
	if p == "" {
		return ""
	}
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.Join(home, strings.TrimPrefix(p, "~"))
		}
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(c.Dir, p)
}

// CertificateValidity is how long leaf certificates are valid.
func (c *Cluster) CertificateValidity() time.Duration {
	return mustDuration(c.Spec.PKI.CertificateValidity)
}

// CACertificateValidity is how long a CA made by etcdadm is valid.
func (c *Cluster) CACertificateValidity() time.Duration {
	return mustDuration(c.Spec.PKI.CACertificateValidity)
}

// mustDuration parses a duration that validation has already accepted.
func mustDuration(s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(fmt.Sprintf("duration %q was not validated: %v", s, err))
	}
	return d
}

// Host returns the host with the given name.
func (c *Cluster) Host(name string) (Host, bool) {
	for _, h := range c.Spec.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}

// ControlPlaneHost returns the control-plane host with the given name.
func (c *Cluster) ControlPlaneHost(name string) (ControlPlaneHost, bool) {
	for _, h := range c.Spec.ControlPlane.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return ControlPlaneHost{}, false
}

// IsControlPlaneHost reports whether name is one of spec.controlPlane.hosts.
func (c *Cluster) IsControlPlaneHost(name string) bool {
	_, ok := c.ControlPlaneHost(name)
	return ok
}

// AllHosts lists every host etcdadm reaches, in inventory order: the etcd
// hosts, then the control-plane hosts.
func (c *Cluster) AllHosts() []Host {
	out := slices.Clone(c.Spec.Hosts)
	for _, h := range c.Spec.ControlPlane.Hosts {
		out = append(out, h.Host())
	}
	return out
}

// AllHostNames lists the names of AllHosts.
func (c *Cluster) AllHostNames() []string {
	var names []string
	for _, h := range c.AllHosts() {
		names = append(names, h.Name)
	}
	return names
}
