// Package config reads, defaults and validates the etcdadm inventory: one YAML
// file that describes an etcd cluster, its hosts, its PKI and how to reach the hosts.
// It owns the inventory's types and is a leaf: it imports nothing of
// etcdadm's but the release reader.
package config

// APIVersion and Kind identify the inventory format.
const (
	APIVersion = "etcdadm/v1alpha1"
	Kind       = "Cluster"
)

// Topology says where etcd runs relative to the Kubernetes control plane.
type Topology string

const (
	// TopologyExternal runs etcd on dedicated hosts whose kubelet only runs etcd.
	TopologyExternal Topology = "external"
	// TopologyStacked runs etcd on the control-plane hosts themselves.
	TopologyStacked Topology = "stacked"
)

// KeyAlgorithm names a private key type, with the spelling kubeadm's
// ClusterConfiguration.encryptionAlgorithm uses.
type KeyAlgorithm string

// The key algorithms kubeadm v1.37 can generate.
const (
	RSA2048   KeyAlgorithm = "RSA-2048"
	RSA3072   KeyAlgorithm = "RSA-3072"
	RSA4096   KeyAlgorithm = "RSA-4096"
	ECDSAP256 KeyAlgorithm = "ECDSA-P256"
	ECDSAP384 KeyAlgorithm = "ECDSA-P384"
)

// KeyAlgorithms lists the supported key algorithms in the order they are documented.
var KeyAlgorithms = []KeyAlgorithm{RSA2048, RSA3072, RSA4096, ECDSAP256, ECDSAP384}

// Cluster is the whole inventory.
type Cluster struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata"`
	Spec       Spec     `json:"spec"`

	// Dir is the directory of the inventory file; relative paths resolve against it.
	Dir string `json:"-"`

	self *executable
	// source names the inventory and lines are its fields' lines, for the
	// problems found after loading (CheckSSHFiles).
	source string
	lines  map[string]int
}

// Metadata names the cluster.
type Metadata struct {
	Name string `json:"name"`
}

// Spec describes the cluster.
type Spec struct {
	Topology          Topology `json:"topology,omitempty"`
	KubernetesVersion string   `json:"kubernetesVersion,omitempty"`
	KubeadmAPIVersion string   `json:"kubeadmAPIVersion,omitempty"`
	Etcd              Etcd     `json:"etcd,omitempty"`
	PKI               PKI      `json:"pki,omitempty"`
	Kubelet           Kubelet  `json:"kubelet,omitempty"`
	SSH               SSH      `json:"ssh,omitempty"`
	Images            Images   `json:"images,omitempty"`
	Hosts             []Host   `json:"hosts"`
	// ControlPlane lists, for the external topology, the Kubernetes
	// control-plane hosts whose kube-apiservers use this etcd cluster.
	ControlPlane ControlPlane `json:"controlPlane,omitempty"`
	// Backup, when set, has every member host back the cluster up on a
	// schedule, to an S3 bucket.
	Backup *Backup `json:"backup,omitempty"`
}

// ControlPlane holds the control-plane hosts of an external etcd cluster.
type ControlPlane struct {
	Hosts []ControlPlaneHost `json:"hosts,omitempty"`
}

// ControlPlaneHost is a Kubernetes control-plane host that runs no etcd
// member: it gets the etcd CA, its kube-apiserver's apiserver-etcd-client
// certificate and the etcd.external part of a kubeadm configuration.
type ControlPlaneHost struct {
	// Name is the node name: where its certificate is kept in the PKI.
	Name string `json:"name"`
	// Address is the host's IPv4 or IPv6 address.
	Address string  `json:"address"`
	SSH     HostSSH `json:"ssh,omitempty"`
}

// Host is the control-plane host as etcdadm reaches it: a host with its
// name, address and SSH settings, and no member settings.
func (h ControlPlaneHost) Host() Host {
	return Host{Name: h.Name, Address: h.Address, SSH: h.SSH}
}

// Images says where the hosts get the etcd and pause images from.
type Images struct {
	// Dir holds image archives (docker save, ctr images export) on the
	// operator's machine, relative to the inventory file unless absolute;
	// apply imports what a host lacks from there.
	Dir string `json:"dir,omitempty"`
	// AirGapped says the hosts never pull: apply refuses to run while an
	// image a host needs is neither on it nor in Dir.
	AirGapped bool `json:"airGapped,omitempty"`
}

// Etcd holds settings shared by every member.
type Etcd struct {
	ImageRepository string            `json:"imageRepository,omitempty"`
	ImageTag        string            `json:"imageTag,omitempty"`
	DataDir         string            `json:"dataDir,omitempty"`
	ServerCertSANs  []string          `json:"serverCertSANs,omitempty"`
	PeerCertSANs    []string          `json:"peerCertSANs,omitempty"`
	ExtraArgs       map[string]string `json:"extraArgs,omitempty"`
	// Runtime runs each member: a static Pod of the host's kubelet
	// (kubelet, the default) or a systemd service (systemd).
	Runtime Runtime `json:"runtime,omitempty"`
	// Release is the etcd release tarball the systemd runtime installs
	// etcd and etcdctl from.
	Release Release `json:"release,omitempty"`
}

// PKI says where the operator's copy of the PKI lives and how certificates are made.
type PKI struct {
	// Dir is on the operator's machine, relative to the inventory file unless absolute.
	Dir          string       `json:"dir,omitempty"`
	KeyAlgorithm KeyAlgorithm `json:"keyAlgorithm,omitempty"`
	// CertificateValidity and CACertificateValidity are Go durations ("8760h").
	CertificateValidity   string `json:"certificateValidity,omitempty"`
	CACertificateValidity string `json:"caCertificateValidity,omitempty"`
}

// Kubelet configures the standalone kubelet that runs etcd on external hosts.
type Kubelet struct {
	CgroupDriver             string         `json:"cgroupDriver,omitempty"`
	ContainerRuntimeEndpoint string         `json:"containerRuntimeEndpoint,omitempty"`
	StaticPodPath            string         `json:"staticPodPath,omitempty"`
	ExtraConfig              map[string]any `json:"extraConfig,omitempty"`
}

// SSH holds the defaults for reaching every host.
type SSH struct {
	User           string `json:"user,omitempty"`
	Port           int    `json:"port,omitempty"`
	IdentityFile   string `json:"identityFile,omitempty"`
	KnownHostsFile string `json:"knownHostsFile,omitempty"`
	ProxyJump      string `json:"proxyJump,omitempty"`
}

// Host is one etcd member.
type Host struct {
	// Name is the node name: certificate CN and etcd --name.
	Name string `json:"name"`
	// Address is the advertise address, IPv4 or IPv6.
	Address        string   `json:"address"`
	ServerCertSANs []string `json:"serverCertSANs,omitempty"`
	PeerCertSANs   []string `json:"peerCertSANs,omitempty"`
	// ExtraArgs are this member's own etcd flags, in the order its command
	// lists them after the cluster's: a list, as kubeadm v1beta4 writes
	// extraArgs, because the order is part of the manifest's bytes (the
	// guide's kubeadmcfg.yaml sets the URLs and the name per host).
	ExtraArgs []Arg   `json:"extraArgs,omitempty"`
	SSH       HostSSH `json:"ssh,omitempty"`
}

// Arg is one etcd flag, without its leading dashes.
type Arg struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// HostSSH overrides how one host is reached.
type HostSSH struct {
	Host      string `json:"host,omitempty"`
	Port      int    `json:"port,omitempty"`
	User      string `json:"user,omitempty"`
	ProxyJump string `json:"proxyJump,omitempty"`
}
