// Package kubeadmconfig writes each member's kubeadmcfg.yaml as the kubeadm
// HA-etcd guide does, from kubeadm's own v1beta4 API types, so that kubeadm
// run on the host (`init phase etcd local`, `certs renew`) agrees with etcdadm.
package kubeadmconfig

import (
	"bytes"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeadmv1beta4 "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"

	"github.com/etcdadm-io/etcdadm/internal/typedyaml"
	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
)

// Path is where a member's kubeadmcfg.yaml goes on its host.
const Path = "/etc/kubernetes/kubeadmcfg.yaml"

// Objects are the two documents of a kubeadmcfg.yaml.
type Objects struct {
	Init    *kubeadmv1beta4.InitConfiguration
	Cluster *kubeadmv1beta4.ClusterConfiguration
}

// Build returns the kubeadm configuration of member h.
func Build(c *config.Cluster, h config.Host, initialCluster, state string) Objects {
	gv := kubeadmv1beta4.SchemeGroupVersion.String()
	init := &kubeadmv1beta4.InitConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: gv, Kind: "InitConfiguration"},
	}
	init.NodeRegistration.Name = h.Name
	init.LocalAPIEndpoint.AdvertiseAddress = h.Address

	var extra []kubeadmv1beta4.Arg
	for _, a := range manifests.ExtraArgs(c, initialCluster, state) {
		extra = append(extra, kubeadmv1beta4.Arg{Name: a.Name, Value: a.Value})
	}
	local := &kubeadmv1beta4.LocalEtcd{
		ImageMeta: kubeadmv1beta4.ImageMeta{
			ImageRepository: c.Spec.Etcd.ImageRepository,
			ImageTag:        c.Spec.Etcd.ImageTag,
		},
		DataDir:        c.Spec.Etcd.DataDir,
		ExtraArgs:      extra,
		ServerCertSANs: certs.ServerCertSANs(c, h),
		PeerCertSANs:   certs.PeerCertSANs(c, h),
	}
	cluster := &kubeadmv1beta4.ClusterConfiguration{
		TypeMeta:                    metav1.TypeMeta{APIVersion: gv, Kind: "ClusterConfiguration"},
		KubernetesVersion:           c.Spec.KubernetesVersion,
		EncryptionAlgorithm:         kubeadmv1beta4.EncryptionAlgorithmType(c.Spec.PKI.KeyAlgorithm),
		CertificateValidityPeriod:   &metav1.Duration{Duration: c.CertificateValidity()},
		CACertificateValidityPeriod: &metav1.Duration{Duration: c.CACertificateValidity()},
	}
	cluster.Etcd.Local = local
	return Objects{Init: init, Cluster: cluster}
}

// Marshal writes both documents as one YAML file.
func (o Objects) Marshal() ([]byte, error) {
	var out bytes.Buffer
	for i, obj := range []any{o.Init, o.Cluster} {
		b, err := typedyaml.Marshal(obj, nil)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			out.WriteString("---\n")
		}
		out.Write(b)
	}
	return out.Bytes(), nil
}
