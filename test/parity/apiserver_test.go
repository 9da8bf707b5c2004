package parity

// etcdadm's edits of what kubeadm v1.37.2 writes for a control-plane host of
// an external cluster: --etcd-servers in the kube-apiserver static Pod, and
// etcd.external.endpoints in the kubeadm-config ConfigMap. Each must be
// exactly what kubeadm itself writes for the new endpoints, so that nothing
// else of kubeadm's files changes.

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	kubeadmapi "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm"
	kubeadmconstants "k8s.io/kubernetes/cmd/kubeadm/app/constants"
	controlplanephase "k8s.io/kubernetes/cmd/kubeadm/app/phases/controlplane"
	"k8s.io/kubernetes/cmd/kubeadm/app/phases/uploadconfig"
	configutil "k8s.io/kubernetes/cmd/kubeadm/app/util/config"

	"github.com/etcdadm-io/etcdadm/pkg/apiserver"
	"github.com/etcdadm-io/etcdadm/pkg/kubeadmconfig"
)

// externalInit is a kubeadm init configuration of a control-plane host
// whose etcd is external, with these endpoints.
func externalInit(t *testing.T, endpoints ...string) *kubeadmapi.InitConfiguration {
	t.Helper()
	doc := `apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration: {name: cp0}
localAPIEndpoint: {advertiseAddress: 10.0.0.20}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.37.2
controlPlaneEndpoint: lb.example.com:6443
etcd:
  external:
    caFile: /etc/kubernetes/pki/etcd/ca.crt
    certFile: /etc/kubernetes/pki/apiserver-etcd-client.crt
    keyFile: /etc/kubernetes/pki/apiserver-etcd-client.key
    endpoints:
`
	for _, e := range endpoints {
		doc += "    - " + e + "\n"
	}
	cfg, err := configutil.BytesToInitConfiguration([]byte(doc), true)
	if err != nil {
		t.Fatalf("kubeadm cannot load %s: %v", doc, err)
	}
	return cfg
}

// apiServerManifest is the file kubeadm's `init phase control-plane
// apiserver` writes for cfg.
func apiServerManifest(t *testing.T, cfg *kubeadmapi.InitConfiguration) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := controlplanephase.CreateStaticPodFiles(dir, "", &cfg.ClusterConfiguration, &cfg.LocalAPIEndpoint, false, kubeadmconstants.KubeAPIServer); err != nil {
		t.Fatalf("kubeadm init phase control-plane apiserver: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, kubeadmconstants.KubeAPIServer+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	threeMembers = []string{"https://10.0.0.6:2379", "https://10.0.0.7:2379", "https://10.0.0.8:2379"}
	fourMembers  = []string{"https://10.0.0.6:2379", "https://10.0.0.7:2379", "https://10.0.0.8:2379", "https://10.0.0.9:2379"}
	twoMembers   = []string{"https://10.0.0.6:2379", "https://10.0.0.8:2379"}
)

// --etcd-servers set in kubeadm's kube-apiserver manifest gives, byte for
// byte, the manifest kubeadm writes for the new endpoints: a member added,
// one removed, an address moved.
func TestAPIServerEtcdServersEditIsKubeadms(t *testing.T) {
	from := apiServerManifest(t, externalInit(t, threeMembers...))
	if !apiserver.RoundTrips(from) {
		t.Fatalf("kubeadm's manifest does not read back unchanged:\n%s", from)
	}
	m := apiserver.Parse(from)
	if m.Err != "" || !m.Servers(threeMembers) || m.Address != "10.0.0.20" || m.Port != 6443 || m.ClientCA != "/etc/kubernetes/pki/ca.crt" ||
		m.EtcdCAFile != kubeadmconfig.ExternalCAFile || m.EtcdCert != kubeadmconfig.ExternalCertFile || m.EtcdKey != kubeadmconfig.ExternalKeyFile {
		t.Fatalf("kubeadm's manifest read as %+v", m)
	}
	moved := []string{"https://10.0.0.6:2379", "https://10.0.0.17:2379", "https://10.0.0.8:2379"}
	for _, to := range [][]string{fourMembers, twoMembers, moved} {
		got, err := apiserver.SetEtcdServers(from, to)
		if err != nil {
			t.Fatal(err)
		}
		want := apiServerManifest(t, externalInit(t, to...))
		if diff := cmp.Diff(string(want), string(got)); diff != "" {
			t.Errorf("--etcd-servers=%v (-kubeadm's +etcdadm's):\n%s", to, diff)
		}
	}
	// The restart annotation is the only other change etcdadm makes.
	restarted, err := apiserver.WithRestart(from, "2026-12-01T00:00:00Z")
	if err != nil {
		t.Fatal(err)
	}
	if r := apiserver.Parse(restarted); r.Restart != "2026-12-01T00:00:00Z" || !r.Servers(threeMembers) {
		t.Errorf("restarted manifest read as %+v", r)
	}
}

// etcd.external.endpoints set in the ClusterConfiguration kubeadm uploads
// gives, byte for byte, what kubeadm uploads for the new endpoints; an
// upload with the same endpoints is left alone.
func TestKubeadmConfigEndpointsEditIsKubeadms(t *testing.T) {
	stored := func(endpoints []string) []byte {
		t.Helper()
		client := fake.NewClientset()
		if err := uploadconfig.UploadConfiguration(externalInit(t, endpoints...), client); err != nil {
			t.Fatalf("kubeadm upload-config: %v", err)
		}
		cm, err := client.CoreV1().ConfigMaps(kubeadmconfig.StoredNamespace).Get(context.Background(), kubeadmconfig.StoredConfigMap, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return []byte(cm.Data[kubeadmconfig.StoredKey])
	}
	from := stored(threeMembers)
	for _, to := range [][]string{fourMembers, twoMembers} {
		got, changed, err := kubeadmconfig.SetStoredEndpoints(from, to)
		if err != nil || !changed {
			t.Fatalf("set %v: changed %v, %v", to, changed, err)
		}
		if diff := cmp.Diff(string(stored(to)), string(got)); diff != "" {
			t.Errorf("endpoints %v (-kubeadm's +etcdadm's):\n%s", to, diff)
		}
	}
	if got, changed, err := kubeadmconfig.SetStoredEndpoints(from, threeMembers); err != nil || changed || string(got) != string(from) {
		t.Errorf("the same endpoints: changed %v, %v", changed, err)
	}
}
