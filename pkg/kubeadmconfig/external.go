package kubeadmconfig

import (
	"io/fs"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeadmv1beta4 "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"

	"github.com/etcdadm-io/etcdadm/internal/typedyaml"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
)

// ExternalPath is where a control-plane host of an external cluster gets
// the ClusterConfiguration that points kubeadm at the etcd members.
const (
	ExternalPath             = "/etc/kubernetes/etcd-external.yaml"
	ExternalMode fs.FileMode = 0o644
)

// The files a control-plane host's kube-apiserver reads to reach etcd, at
// the paths etcdadm writes them to (kubeadm's own for a stacked member's
// kube-apiserver).
const (
	ExternalCAFile   = manifests.EtcdPKIDir + "/ca.crt"
	ExternalCertFile = manifests.CertificatesDir + "/apiserver-etcd-client.crt"
	ExternalKeyFile  = manifests.CertificatesDir + "/apiserver-etcd-client.key"
)

// BuildExternal returns the ClusterConfiguration of a control-plane host
// whose kube-apiserver uses the inventory's members: etcd.external with every
// member's client URL and the files etcdadm writes, and the inventory's
// kubernetesVersion, so that the file is a whole ClusterConfiguration that
// `kubeadm init --config` accepts as it is.
func BuildExternal(c *config.Cluster) *kubeadmv1beta4.ClusterConfiguration {
	cfg := &kubeadmv1beta4.ClusterConfiguration{
		TypeMeta:          metav1.TypeMeta{APIVersion: kubeadmv1beta4.SchemeGroupVersion.String(), Kind: "ClusterConfiguration"},
		KubernetesVersion: c.Spec.KubernetesVersion,
	}
	ext := &kubeadmv1beta4.ExternalEtcd{CAFile: ExternalCAFile, CertFile: ExternalCertFile, KeyFile: ExternalKeyFile}
	for _, h := range c.Spec.Hosts {
		ext.Endpoints = append(ext.Endpoints, manifests.ClientURL(h))
	}
	cfg.Etcd.External = ext
	return cfg
}

// MarshalExternal writes a control-plane host's etcd-external.yaml.
func MarshalExternal(c *config.Cluster) ([]byte, error) {
	return typedyaml.Marshal(BuildExternal(c), nil)
}
