package parity

// The external topology's control-plane hosts tied to kubeadm: etcdadm
// writes /etc/kubernetes/etcd-external.yaml there, and kubeadm v1.37.2's own
// code must accept it, make a kube-apiserver that reaches every member with
// the files etcdadm writes, and leave those files alone.

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"
	kubeadmapi "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm"
	kubeadmconstants "k8s.io/kubernetes/cmd/kubeadm/app/constants"
	certsphase "k8s.io/kubernetes/cmd/kubeadm/app/phases/certs"
	controlplanephase "k8s.io/kubernetes/cmd/kubeadm/app/phases/controlplane"
	"k8s.io/kubernetes/cmd/kubeadm/app/phases/uploadconfig"
	configutil "k8s.io/kubernetes/cmd/kubeadm/app/util/config"
	"sigs.k8s.io/yaml"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/kubeadmconfig"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/pipeline"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
)

var controlPlaneCases = []parityCase{
	{"external-three-ipv4-two-control-planes", header + `spec:
  hosts:
  - {name: infra0, address: 10.0.0.6}
  - {name: infra1, address: 10.0.0.7}
  - {name: infra2, address: 10.0.0.8}
  controlPlane:
    hosts:
    - {name: cp0, address: 10.0.0.20}
    - {name: cp1, address: 10.0.0.21}
`},
	{"external-ipv6-ecdsa-v1.36", header + `spec:
  kubernetesVersion: v1.36.4
  pki: {keyAlgorithm: ECDSA-P384}
  hosts:
  - {name: infra0, address: "fd00::6"}
  - {name: infra1, address: "fd00::7"}
  - {name: infra2, address: 10.0.0.8}
  controlPlane:
    hosts:
    - {name: cp0.example.com, address: "fd00::20"}
`},
}

// initDoc is the operator's part of `kubeadm init --config` on a
// control-plane host: an InitConfiguration naming the node and its address,
// put in front of etcd-external.yaml as the README shows.
func initDoc(h config.ControlPlaneHost) []byte {
	return []byte("apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nnodeRegistration:\n  name: " + h.Name +
		"\nlocalAPIEndpoint:\n  advertiseAddress: \"" + h.Address + "\"\n---\n")
}

// operatorFields are ClusterConfiguration fields an operator appends to
// etcd-external.yaml, the last document of the file.
var operatorFields = []byte("controlPlaneEndpoint: lb.example.com:6443\nnetworking:\n  podSubnet: 10.244.0.0/16\n")

func TestControlPlaneEtcdExternalWithKubeadm(t *testing.T) {
	for _, tc := range controlPlaneCases {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := config.Parse([]byte(tc.inventory), tc.name, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			p, pki, _, err := plan.Compute(c, pipeline.RuntimeFor(c), plan.Options{})
			if err != nil {
				t.Fatal(err)
			}
			for _, cp := range c.Spec.ControlPlane.Hosts {
				t.Run(cp.Name, func(t *testing.T) {
					h, ok := p.FindHost(cp.Name)
					if !ok {
						t.Fatalf("no plan for %s", cp.Name)
					}
					ext := fileOf(t, *h, kubeadmconfig.ExternalPath)

					// kubeadm config validate: the file alone, behind the
					// operator's InitConfiguration, and with the operator's
					// own ClusterConfiguration fields appended, as the README
					// shows.
					withInit := append(initDoc(cp), ext...)
					extended := append(slices.Clone(withInit), operatorFields...)
					for name, data := range map[string][]byte{"etcd-external.yaml": ext, "init.yaml": withInit, "extended.yaml": extended} {
						out, err := runKubeadm(t, "config", "validate", "--config", writeTemp(t, name, data))
						if err != nil || !strings.Contains(out, "ok") {
							t.Fatalf("kubeadm config validate refuses %s: %v\n%s\n%s", name, err, out, data)
						}
					}

					// kubeadm init phase control-plane apiserver.
					initFile := extended
					cfg, err := configutil.BytesToInitConfiguration(initFile, true)
					if err != nil {
						t.Fatalf("kubeadm cannot load the init configuration: %v\n%s", err, initFile)
					}
					if cfg.Etcd.External == nil || cfg.Etcd.Local != nil {
						t.Fatalf("kubeadm reads etcd as %+v, want external only", cfg.Etcd)
					}
					if cfg.ControlPlaneEndpoint != "lb.example.com:6443" || cfg.Networking.PodSubnet != "10.244.0.0/16" {
						t.Errorf("the appended fields were not read: %q, %q", cfg.ControlPlaneEndpoint, cfg.Networking.PodSubnet)
					}
					checkAPIServerFlags(t, "init", c, apiServerPod(t, cfg))

					// kubeadm join --control-plane: the joining host reads the
					// ClusterConfiguration init uploaded to the kubeadm-config
					// ConfigMap (client-go's in-memory clientset standing in for
					// the API server).
					client := fake.NewClientset()
					if err := uploadconfig.UploadConfiguration(cfg, client); err != nil {
						t.Fatalf("kubeadm upload-config: %v", err)
					}
					joined, err := configutil.FetchInitConfigurationFromCluster(client, nil, "preflight", false, false, false, true)
					if err != nil {
						t.Fatalf("kubeadm cannot read back the kubeadm-config ConfigMap: %v", err)
					}
					joined.LocalAPIEndpoint = kubeadmapi.APIEndpoint{AdvertiseAddress: cp.Address, BindPort: kubeadmconstants.KubeAPIServerPort}
					checkAPIServerFlags(t, "join", c, apiServerPod(t, joined))

					// The client certificate is kubeadm's apiserver-etcd-client,
					// this host's own.
					kubeadmPKI := t.TempDir()
					writeFile(t, filepath.Join(kubeadmPKI, "etcd/ca.crt"), pki.CA.CertPEM, 0o644)
					writeFile(t, filepath.Join(kubeadmPKI, "etcd/ca.key"), pki.CA.KeyPEM, 0o600)
					kcfg := &kubeadmapi.InitConfiguration{ClusterConfiguration: cfg.ClusterConfiguration}
					kcfg.CertificatesDir = kubeadmPKI
					kcfg.ClusterConfiguration.EncryptionAlgorithm = kubeadmapi.EncryptionAlgorithmType(c.Spec.PKI.KeyAlgorithm)
					kcfg.ClusterConfiguration.CertificateValidityPeriod = durationPtr(c.CertificateValidity())
					spec := certsphase.KubeadmCertEtcdAPIClient()
					if err := certsphase.CreateCertAndKeyFilesWithCA(spec, certsphase.KubeadmCertEtcdCA(), kcfg); err != nil {
						t.Fatalf("kubeadm %s: %v", spec.Name, err)
					}
					theirs := readCert(t, filepath.Join(kubeadmPKI, spec.BaseName+".crt"))
					ours := parseCert(t, fileOf(t, *h, kubeadmconfig.ExternalCertFile))
					compareCert(t, spec.Name, ours, theirs, pki.CA.Cert)
					compareModes(t, *h, kubeadmPKI, spec.BaseName)
					if kp, _ := pki.Leaf(c.Spec.Hosts[0].Name, certs.APIServerEtcdClient); kp.Cert.SerialNumber.Cmp(ours.SerialNumber) == 0 {
						t.Errorf("%s has a member's client certificate, not its own", cp.Name)
					}

					// kubeadm init's certificates, made with etcdadm's files in
					// place, leave those files as they are.
					dir := t.TempDir()
					sums := map[string]string{}
					for _, f := range h.Files {
						if f.Part == plan.PartCerts {
							rel := strings.TrimPrefix(f.Path, manifests.CertificatesDir+"/")
							writeFile(t, filepath.Join(dir, rel), f.Data, f.Mode.Perm())
							sums[rel] = f.SHA256()
						}
					}
					cfg.CertificatesDir = dir
					cfgFile := writeTemp(t, "init.yaml", marshalInit(t, cfg))
					if out, err := runKubeadm(t, "init", "phase", "certs", "all", "--config", cfgFile); err != nil {
						t.Fatalf("kubeadm init phase certs all: %v\n%s", err, out)
					}
					checkUnchanged(t, "kubeadm's certs phase", dir, sums)
					if _, err := os.Stat(filepath.Join(dir, "apiserver.crt")); err != nil {
						t.Errorf("kubeadm's certs phase made no apiserver certificate: %v", err)
					}
				})
			}
		})
	}
}

// apiServerPod runs kubeadm's `init phase control-plane apiserver` code on
// cfg and returns the kube-apiserver static Pod it writes.
func apiServerPod(t *testing.T, cfg *kubeadmapi.InitConfiguration) corev1.Pod {
	t.Helper()
	dir := t.TempDir()
	if err := controlplanephase.CreateStaticPodFiles(dir, "", &cfg.ClusterConfiguration, &cfg.LocalAPIEndpoint, false, kubeadmconstants.KubeAPIServer); err != nil {
		t.Fatalf("kubeadm init phase control-plane apiserver: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, kubeadmconstants.KubeAPIServer+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(b, &pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

// checkAPIServerFlags: --etcd-servers names every member's client URL, and
// the CA, certificate and key are the files etcdadm writes on the host.
func checkAPIServerFlags(t *testing.T, what string, c *config.Cluster, pod corev1.Pod) {
	t.Helper()
	flags := map[string]string{}
	for _, arg := range pod.Spec.Containers[0].Command {
		if k, v, ok := strings.Cut(strings.TrimPrefix(arg, "--"), "="); ok {
			flags[k] = v
		}
	}
	var want []string
	for _, h := range c.Spec.Hosts {
		want = append(want, "https://"+net.JoinHostPort(h.Address, "2379"))
	}
	if got := strings.Split(flags["etcd-servers"], ","); !slices.Equal(got, want) {
		t.Errorf("%s: --etcd-servers=%s, want every member: %v", what, flags["etcd-servers"], want)
	}
	for flag, want := range map[string]string{
		"etcd-cafile":   "/etc/kubernetes/pki/etcd/ca.crt",
		"etcd-certfile": "/etc/kubernetes/pki/apiserver-etcd-client.crt",
		"etcd-keyfile":  "/etc/kubernetes/pki/apiserver-etcd-client.key",
	} {
		if flags[flag] != want {
			t.Errorf("%s: --%s=%s, want %s (the file etcdadm writes)", what, flag, flags[flag], want)
		}
	}
}
