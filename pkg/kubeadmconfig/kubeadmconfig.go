// Package kubeadmconfig writes each member's kubeadmcfg.yaml as the kubeadm
// HA-etcd guide does, from kubeadm's own v1beta4 API types, so that kubeadm
// run on the host (`init phase etcd local`, `certs renew`) agrees with etcdadm.
// On stacked hosts it also writes the configuration kubeadm itself is run
// with: `kubeadm init` on the inventory's first host, `kubeadm join
// --control-plane` on the others.
// It is a leaf: it imports nothing that plans, reaches a host or runs.
package kubeadmconfig

import (
	"bytes"
	"io/fs"
	"net"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeadmv1beta4 "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
	kubeadmconstants "k8s.io/kubernetes/cmd/kubeadm/app/constants"

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
	for _, a := range manifests.ExtraArgs(c, h, initialCluster, state) {
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

// Where and how the configurations kubeadm runs with on stacked hosts go.
// Neither holds a secret: kubeadm makes the bootstrap token at init, and the
// join file carries placeholders for it. The join file is private all the
// same, since that is where a bootstrap token goes.
const (
	InitPath             = "/etc/kubernetes/kubeadm-init.yaml"
	JoinPath             = "/etc/kubernetes/kubeadm-join.yaml"
	InitMode fs.FileMode = 0o644
	JoinMode fs.FileMode = 0o600
)

// The join file's discovery values etcdadm cannot know: kubeadm makes the
// bootstrap token and the cluster CA at init. They pass `kubeadm config
// validate`; `kubeadm join` stops at discovery until they are replaced with
// what `kubeadm token create --print-join-command` prints on the first host.
const (
	PlaceholderToken      = "xxxxxx.xxxxxxxxxxxxxxxx"
	PlaceholderCACertHash = "sha256:set-from-kubeadm-token-create-print-join-command"
)

// File is a kubeadm configuration file of a host.
type File struct {
	Path string
	Mode fs.FileMode
	Data []byte
}

// ForKubeadm returns the configuration stacked host h runs kubeadm with:
// InitConfiguration and ClusterConfiguration on the inventory's first host,
// JoinConfiguration on the others. Its member starts with initialCluster and
// state, as in its kubeadmcfg.yaml and manifest.
func ForKubeadm(c *config.Cluster, h config.Host, initialCluster, state string) (File, error) {
	if IsFirst(c, h) {
		b, err := BuildInit(c, h, initialCluster, state).Marshal()
		return File{Path: InitPath, Mode: InitMode, Data: b}, err
	}
	b, err := MarshalJoin(BuildJoin(c, h))
	return File{Path: JoinPath, Mode: JoinMode, Data: b}, err
}

// IsFirst reports whether h is the inventory's first host, the one `kubeadm
// init` runs on.
func IsFirst(c *config.Cluster, h config.Host) bool {
	return len(c.Spec.Hosts) > 0 && c.Spec.Hosts[0].Name == h.Name
}

// APIServerEndpoint is the first host's kube-apiserver, host:port: the
// cluster's controlPlaneEndpoint and where joining hosts discover it.
func APIServerEndpoint(c *config.Cluster) string {
	if len(c.Spec.Hosts) == 0 {
		return ""
	}
	return net.JoinHostPort(c.Spec.Hosts[0].Address, strconv.Itoa(kubeadmconstants.KubeAPIServerPort))
}

// InitSkipPhases are the `kubeadm init` phases etcdadm does instead: etcd's
// static Pod is etcdadm's.
func InitSkipPhases() []string { return []string{"etcd"} }

// JoinSkipPhases are the `kubeadm join` phases etcdadm does instead: adding
// the member and writing its static Pod.
func JoinSkipPhases() []string { return []string{"etcd-join"} }

// IgnorePreflightErrors names kubeadm's preflight checks that fail on a host
// where etcdadm runs etcd: its ports are taken, its data directory and its
// manifest exist. etcdadm's own preflight refuses any other process on
// those ports.
func IgnorePreflightErrors(c *config.Cluster) []string {
	manifest := kubeadmconstants.GetStaticPodFilepath(kubeadmconstants.Etcd, kubeadmconstants.GetStaticPodDirectory())
	return []string{
		"Port-" + strconv.Itoa(kubeadmconstants.EtcdListenClientPort),
		"Port-" + strconv.Itoa(kubeadmconstants.EtcdListenPeerPort),
		"DirAvailable-" + strings.ReplaceAll(c.Spec.Etcd.DataDir, "/", "-"),
		"FileAvailable-" + strings.ReplaceAll(manifest, "/", "-"),
	}
}

// BuildInit returns the `kubeadm init` configuration of the first host h.
// Its etcd.local is the one of h's kubeadmcfg.yaml but for the SANs: the
// ClusterConfiguration is the whole cluster's (kubeadm uploads it and every
// joining host uses it), so it carries only the SANs every member's
// certificates have; kubeadm would refuse another host's certificate that
// lacks h's own.
func BuildInit(c *config.Cluster, h config.Host, initialCluster, state string) Objects {
	o := Build(c, h, initialCluster, state)
	o.Init.NodeRegistration.IgnorePreflightErrors = IgnorePreflightErrors(c)
	o.Init.SkipPhases = InitSkipPhases()
	o.Cluster.ControlPlaneEndpoint = APIServerEndpoint(c)
	o.Cluster.Etcd.Local.ServerCertSANs = slices.Clone(c.Spec.Etcd.ServerCertSANs)
	o.Cluster.Etcd.Local.PeerCertSANs = slices.Clone(c.Spec.Etcd.PeerCertSANs)
	// Uploaded for the whole cluster: the first host's own flags stay in its kubeadmcfg.yaml.
	args := o.Cluster.Etcd.Local.ExtraArgs
	o.Cluster.Etcd.Local.ExtraArgs = args[:len(args)-len(h.ExtraArgs)]
	return o
}

// BuildJoin returns the `kubeadm join --control-plane` configuration of
// host h: its node name and advertise address, the first host to discover
// the cluster from, and placeholders for the token and CA hash.
func BuildJoin(c *config.Cluster, h config.Host) *kubeadmv1beta4.JoinConfiguration {
	j := &kubeadmv1beta4.JoinConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: kubeadmv1beta4.SchemeGroupVersion.String(), Kind: "JoinConfiguration"},
	}
	j.NodeRegistration.Name = h.Name
	j.NodeRegistration.IgnorePreflightErrors = IgnorePreflightErrors(c)
	j.Discovery.BootstrapToken = &kubeadmv1beta4.BootstrapTokenDiscovery{
		Token:             PlaceholderToken,
		APIServerEndpoint: APIServerEndpoint(c),
		CACertHashes:      []string{PlaceholderCACertHash},
	}
	j.ControlPlane = &kubeadmv1beta4.JoinControlPlane{
		LocalAPIEndpoint: kubeadmv1beta4.APIEndpoint{AdvertiseAddress: h.Address},
	}
	j.SkipPhases = JoinSkipPhases()
	return j
}

// MarshalJoin writes a JoinConfiguration as YAML, saying that the CA is
// verified (unsafeSkipCAVerification: false) rather than leaving it out.
func MarshalJoin(j *kubeadmv1beta4.JoinConfiguration) ([]byte, error) {
	var extra map[string]any
	if j.Discovery.BootstrapToken != nil {
		extra = map[string]any{"discovery": map[string]any{"bootstrapToken": map[string]any{
			"unsafeSkipCAVerification": j.Discovery.BootstrapToken.UnsafeSkipCAVerification,
		}}}
	}
	return typedyaml.Marshal(j, extra)
}
