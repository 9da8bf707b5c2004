package kubeadmconfig

import (
	"fmt"
	"io/fs"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeadmv1beta4 "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
	"sigs.k8s.io/yaml"

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

// Stored is where kubeadm keeps its ClusterConfiguration in the cluster:
// the kube-system/kubeadm-config ConfigMap, under this key. Its next
// `kubeadm upgrade` writes the kube-apiserver's --etcd-servers from it.
const (
	StoredNamespace = "kube-system"
	StoredConfigMap = "kubeadm-config"
	StoredKey       = "ClusterConfiguration"
)

// SetStoredEndpoints returns the ClusterConfiguration kubeadm stored (the
// ConfigMap's data) with etcd.external.endpoints (and httpEndpoints, where
// it is the endpoints, as kubeadm defaults it) set to endpoints, decoded
// and written back as the typed v1beta4 object kubeadm wrote; changed is
// false when it already held them. A stored configuration of a stacked
// control plane (etcd.local) is refused: its endpoints are not etcdadm's.
func SetStoredEndpoints(data []byte, endpoints []string) (out []byte, changed bool, err error) {
	var cfg kubeadmv1beta4.ClusterConfiguration
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return nil, false, fmt.Errorf("read kubeadm's %s: %w", StoredKey, err)
	}
	if cfg.Kind != "ClusterConfiguration" || cfg.APIVersion != kubeadmv1beta4.SchemeGroupVersion.String() {
		return nil, false, fmt.Errorf("kubeadm's %s is %s %s, not a %s ClusterConfiguration", StoredKey, cfg.APIVersion, cfg.Kind, kubeadmv1beta4.SchemeGroupVersion)
	}
	if cfg.Etcd.External == nil {
		return nil, false, fmt.Errorf("kubeadm's %s has no etcd.external: its control plane runs its own etcd", StoredKey)
	}
	ext := cfg.Etcd.External
	if slices.Equal(ext.Endpoints, endpoints) {
		return data, false, nil
	}
	// httpEndpoints defaults to the endpoints, and kubeadm stores it so:
	// it follows them unless it was set to something else.
	if slices.Equal(ext.HTTPEndpoints, ext.Endpoints) {
		ext.HTTPEndpoints = slices.Clone(endpoints)
	}
	ext.Endpoints = slices.Clone(endpoints)
	if out, err = yaml.Marshal(&cfg); err != nil {
		return nil, false, fmt.Errorf("write kubeadm's %s: %w", StoredKey, err)
	}
	return out, true, nil
}
