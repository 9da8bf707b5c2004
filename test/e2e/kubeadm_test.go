package e2e

// A kubeadm control plane on lab hosts, made with kubeadm v1.37.2's own
// phases called as Go code (as test/parity calls them): `init phase certs`,
// `init phase kubeconfig admin|super-admin`, `init phase control-plane
// apiserver` and `upload-config`, the kube-apiserver image the lab builds,
// and the host's kubelet running the static Pod.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	kubeadmapi "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm"
	kubeadmconstants "k8s.io/kubernetes/cmd/kubeadm/app/constants"
	certsphase "k8s.io/kubernetes/cmd/kubeadm/app/phases/certs"
	controlplanephase "k8s.io/kubernetes/cmd/kubeadm/app/phases/controlplane"
	kubeconfigphase "k8s.io/kubernetes/cmd/kubeadm/app/phases/kubeconfig"
	"k8s.io/kubernetes/cmd/kubeadm/app/phases/uploadconfig"
	configutil "k8s.io/kubernetes/cmd/kubeadm/app/util/config"

	"github.com/etcdadm-io/etcdadm/pkg/apiserver"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/kubeadmconfig"
	kubeletconf "github.com/etcdadm-io/etcdadm/pkg/kubelet"
	"github.com/etcdadm-io/etcdadm/test/lab"
)

// kubeadmFiles are the files of kubeadm's own PKI a control-plane host gets:
// the cluster's CAs and service-account keys (shared, copied from the first
// host as kubeadm's manual certificate distribution does) and the host's
// own certificates; etcd's are etcdadm's.
var kubeadmFiles = []string{
	"ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "sa.key", "sa.pub",
	"apiserver.crt", "apiserver.key", "apiserver-kubelet-client.crt", "apiserver-kubelet-client.key",
	"front-proxy-client.crt", "front-proxy-client.key",
}

// controlPlane is a kubeadm control plane on lab hosts: its kube-apiservers
// and the super-admin's client of each.
type controlPlane struct {
	hosts  []*lab.Host
	pki    string
	caPEM  []byte
	cfg    *kubeadmapi.InitConfiguration
	admins []*rest.Config
}

// kubeadmInit is the configuration kubeadm init would run with on host h:
// etcd external with endpoints, or stacked (none: kubeadm's local etcd,
// reached on loopback), the first host the control-plane endpoint.
func kubeadmInit(t *testing.T, h, first *lab.Host, endpoints []string) *kubeadmapi.InitConfiguration {
	t.Helper()
	doc := fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration: {name: %s}
localAPIEndpoint: {advertiseAddress: %s}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: %s
controlPlaneEndpoint: %s:6443
`, h.Name, h.Address, lab.KubeletVersion, first.Address)
	if len(endpoints) > 0 {
		doc += fmt.Sprintf("etcd:\n  external:\n    caFile: %s\n    certFile: %s\n    keyFile: %s\n    endpoints:\n", kubeadmconfig.ExternalCAFile, kubeadmconfig.ExternalCertFile, kubeadmconfig.ExternalKeyFile)
		for _, e := range endpoints {
			doc += "    - " + e + "\n"
		}
	}
	cfg, err := configutil.BytesToInitConfiguration([]byte(doc), true)
	if err != nil {
		t.Fatalf("kubeadm cannot load %s: %v", doc, err)
	}
	return cfg
}

// startControlPlane runs kubeadm's phases for each host (the first one's
// CAs shared with the others), puts their files on the hosts, imports the
// kube-apiserver image, starts each host's kubelet on the manifests
// directory (the guide's drop-ins, from the inventory c) and waits until
// every kube-apiserver answers /readyz; then kubeadm's admin group is
// bound to cluster-admin and its ClusterConfiguration uploaded, as
// `kubeadm init` does.
func startControlPlane(t *testing.T, c *config.Cluster, l *lab.Lab, hosts []*lab.Host, endpoints []string) *controlPlane {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cp := &controlPlane{hosts: hosts, pki: t.TempDir()}
	var err error
	for i, h := range hosts {
		cfg := kubeadmInit(t, h, hosts[0], endpoints)
		dir := filepath.Join(cp.pki, h.Name)
		out := filepath.Join(dir, "out")
		for _, d := range []string{filepath.Join(dir, "pki"), filepath.Join(out, "manifests")} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		if i > 0 {
			for _, f := range kubeadmFiles[:6] {
				copyFile(t, filepath.Join(cp.pki, hosts[0].Name, "pki", f), filepath.Join(dir, "pki", f))
			}
		}
		cfg.CertificatesDir = filepath.Join(dir, "pki")
		if err := certsphase.CreatePKIAssets(cfg); err != nil {
			t.Fatalf("kubeadm init phase certs on %s: %v", h.Name, err)
		}
		for _, name := range []string{kubeadmconstants.AdminKubeConfigFileName, kubeadmconstants.SuperAdminKubeConfigFileName} {
			if err := kubeconfigphase.CreateKubeConfigFile(name, out, cfg); err != nil {
				t.Fatalf("kubeadm init phase kubeconfig %s on %s: %v", name, h.Name, err)
			}
		}
		// The manifest names the host's paths, as `kubeadm init` on the host would.
		pkiDir := cfg.CertificatesDir
		cfg.CertificatesDir = kubeadmconstants.KubernetesDir + "/pki"
		if err := controlplanephase.CreateStaticPodFiles(filepath.Join(out, "manifests"), "", &cfg.ClusterConfiguration, &cfg.LocalAPIEndpoint, false, kubeadmconstants.KubeAPIServer); err != nil {
			t.Fatalf("kubeadm init phase control-plane apiserver on %s: %v", h.Name, err)
		}
		if i == 0 {
			cp.cfg = cfg
			if cp.caPEM, err = os.ReadFile(filepath.Join(pkiDir, "ca.crt")); err != nil {
				t.Fatal(err)
			}
		}
		admin, err := clientcmd.BuildConfigFromFlags("", filepath.Join(out, kubeadmconstants.SuperAdminKubeConfigFileName))
		if err != nil {
			t.Fatal(err)
		}
		admin.Host = "https://" + h.Address + ":6443"
		admin.Timeout = 700 * time.Millisecond
		cp.admins = append(cp.admins, admin)
		for _, f := range kubeadmFiles {
			mode := os.FileMode(0o644)
			if strings.HasSuffix(f, ".key") {
				mode = 0o600
			}
			putFile(t, h, filepath.Join(pkiDir, f), "/etc/kubernetes/pki/"+f, mode)
		}
		putFile(t, h, filepath.Join(out, kubeadmconstants.AdminKubeConfigFileName), apiserver.AdminConf, 0o600)
		if err := h.ImportImage(ctx, l.Artifacts.KubeAPIServerImage); err != nil {
			t.Fatal(err)
		}
		startKubelet(t, c, h)
		putFile(t, h, filepath.Join(out, "manifests", kubeadmconstants.KubeAPIServer+".yaml"), apiserver.ManifestPath(apiserver.ManifestsDir), 0o600)
	}
	for i, h := range hosts {
		waitFor(t, "the kube-apiserver on "+h.Name+" to answer /readyz", 3*time.Minute, func() bool { return cp.ready(i) == nil })
	}
	client := cp.client(t, 0)
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: kubeadmconstants.ClusterAdminsGroupAndClusterRoleBinding},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, Name: kubeadmconstants.ClusterAdminsGroupAndClusterRoleBinding}},
	}
	if _, err := client.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("bind kubeadm's admins: %v", err)
	}
	if err := uploadconfig.UploadConfiguration(cp.cfg, client); err != nil {
		t.Fatalf("kubeadm upload-config: %v", err)
	}
	return cp
}

// startKubelet starts h's kubelet on the manifests directory, with the
// guide's drop-ins as etcdadm writes them for the inventory c (the kubelet
// of a control-plane host, or of a stacked member, is kubeadm's).
func startKubelet(t *testing.T, c *config.Cluster, h *lab.Host) {
	t.Helper()
	ctx := context.Background()
	conf, err := kubeletconf.ConfigFile(c)
	if err != nil {
		t.Fatal(err)
	}
	dropIn, err := kubeletconf.DropIn()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.WriteFile(ctx, kubeletconf.ConfigPath, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.WriteFile(ctx, kubeletconf.DropInPath, dropIn, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Exec(ctx, "sh", "-c", "mkdir -p -m 0700 /etc/kubernetes/manifests && systemctl daemon-reload && systemctl restart kubelet"); err != nil {
		t.Fatalf("start the kubelet on %s: %v", h.Name, err)
	}
}

// putFile copies the local file src to dst on h.
func putFile(t *testing.T, h *lab.Host, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.WriteFile(context.Background(), dst, b, mode); err != nil {
		t.Fatalf("write %s on %s: %v", dst, h.Name, err)
	}
}

// client is a super-admin client of the i-th kube-apiserver alone.
func (cp *controlPlane) client(t *testing.T, i int) *kubernetes.Clientset {
	t.Helper()
	cfg := rest.CopyConfig(cp.admins[i])
	cfg.Timeout = 10 * time.Second
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ready asks the i-th kube-apiserver's /readyz once, within 700ms.
func (cp *controlPlane) ready(i int) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cp.caPEM)
	c := &http.Client{Timeout: 700 * time.Millisecond, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
	resp, err := c.Get(cp.admins[i].Host + "/readyz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s", resp.Status)
	}
	return nil
}

// etcdServers reads the --etcd-servers of h's kube-apiserver manifest.
func etcdServers(t *testing.T, h *lab.Host) []string {
	t.Helper()
	b, err := h.ReadFile(context.Background(), apiserver.ManifestPath(apiserver.ManifestsDir))
	if err != nil {
		t.Fatalf("read the kube-apiserver's manifest on %s: %v", h.Name, err)
	}
	m := apiserver.Parse(b)
	if m.Err != "" {
		t.Fatalf("%s's kube-apiserver manifest: %s", h.Name, m.Err)
	}
	return m.EtcdServers
}

// storedEndpoints reads etcd.external.endpoints from kubeadm's
// kubeadm-config ConfigMap.
func (cp *controlPlane) storedEndpoints(t *testing.T) []string {
	t.Helper()
	var lastErr error
	for i := range cp.hosts {
		cm, err := cp.client(t, i).CoreV1().ConfigMaps(kubeadmconfig.StoredNamespace).Get(context.Background(), kubeadmconfig.StoredConfigMap, metav1.GetOptions{})
		if err != nil {
			lastErr = err
			continue
		}
		cfg, err := configutil.BytesToInitConfiguration([]byte(cm.Data[kubeadmconfig.StoredKey]), true)
		if err != nil {
			t.Fatalf("kubeadm cannot read its stored configuration: %v", err)
		}
		if cfg.Etcd.External == nil {
			t.Fatalf("kubeadm's stored configuration has no etcd.external")
		}
		return cfg.Etcd.External.Endpoints
	}
	t.Fatalf("read kubeadm-config: %v", lastErr)
	return nil
}
