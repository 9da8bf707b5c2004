package adopt

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/kubeadmguide"
	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/kubelet"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
)

var nodes = []kubeadmguide.Node{{Name: "infra0", Address: "10.0.0.6"}, {Name: "infra1", Address: "10.0.0.7"}, {Name: "infra2", Address: "10.0.0.8"}}

var guideOptions = kubeadmguide.Options{KubernetesVersion: "v1.37.2", CgroupDriver: "systemd"}

// inventory is what an operator who adopts the guide's cluster writes: the
// hosts and nothing else.
func inventory(t *testing.T, dir string, ns []kubeadmguide.Node) *config.Cluster {
	t.Helper()
	doc := "apiVersion: etcdadm/v1alpha1\nkind: Cluster\nmetadata: {name: guide}\nspec:\n  kubernetesVersion: v1.37.2\n  pki: {dir: pki}\n  hosts:\n"
	for _, n := range ns {
		doc += "  - {name: " + n.Name + ", address: " + n.Address + "}\n"
	}
	c, _, err := config.Parse([]byte(doc), "cluster.yaml", dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func toHosts(built map[string]map[string]kubeadmguide.File, ns []kubeadmguide.Node) []Host {
	var out []Host
	for _, n := range ns {
		files := map[string][]byte{}
		for p, f := range built[n.Name] {
			files[p] = f.Data
		}
		out = append(out, Host{Name: n.Name, Files: files})
	}
	return out
}

func guide(t *testing.T, o kubeadmguide.Options) (*config.Cluster, []Host) {
	t.Helper()
	built, err := kubeadmguide.Build(t.TempDir(), nodes, o)
	if err != nil {
		t.Fatal(err)
	}
	return inventory(t, t.TempDir(), nodes), toHosts(built, nodes)
}

// The guide's cluster, made by kubeadm's own phases, is adopted: the
// inventory made of it renders each etcd.yaml byte for byte, with the
// guide's per-host flags as hosts[].extraArgs in their order, and its
// kubelet settings.
func TestGuideClusterRendersByteForByte(t *testing.T) {
	c, hosts := guide(t, guideOptions)
	res, err := Analyze(c, hosts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res.Layout != LayoutGuide {
		t.Errorf("layout %q", res.Layout)
	}
	inv := res.Inventory
	for i, h := range inv.Spec.Hosts {
		_, ours, err := Render(inv, h, res.Members[h.Name], hosts[i])
		if err != nil {
			t.Fatal(err)
		}
		if string(ours) != string(hosts[i].Files[kubeadmguide.Manifest]) {
			t.Errorf("%s: etcd.yaml differs:\n%s", h.Name, Unified("kubeadm", "etcdadm", hosts[i].Files[kubeadmguide.Manifest], ours))
		}
		var names []string
		for _, a := range h.ExtraArgs {
			names = append(names, a.Name)
		}
		if got := strings.Join(names, " "); got != "name listen-peer-urls listen-client-urls advertise-client-urls initial-advertise-peer-urls" {
			t.Errorf("%s: extraArgs %s", h.Name, got)
		}
		if len(h.ServerCertSANs) != 0 {
			t.Errorf("%s: the guide's SAN is the address, a default; got %v", h.Name, h.ServerCertSANs)
		}
	}
	if inv.Spec.PKI.KeyAlgorithm != config.RSA2048 || inv.Spec.PKI.CertificateValidity != "8760h" || inv.Spec.PKI.CACertificateValidity != "87600h" {
		t.Errorf("pki %+v", inv.Spec.PKI)
	}
	if inv.Spec.Kubelet.CgroupDriver != "systemd" || inv.Spec.Topology != config.TopologyExternal {
		t.Errorf("kubelet %+v, topology %s", inv.Spec.Kubelet, inv.Spec.Topology)
	}
	if !strings.Contains(string(res.YAML), "extraArgs:") || strings.Contains(string(res.YAML), "PRIVATE KEY") {
		t.Errorf("the printed inventory:\n%s", res.YAML)
	}
	if res.CA.KeyPath != "infra0:/etc/kubernetes/pki/etcd/ca.key" {
		t.Errorf("the CA key was taken from %s, want the first host's, the only one the guide leaves it on", res.CA.KeyPath)
	}
	// The given inventory (the hosts alone) differs in what it would write.
	d, err := Differences(c, res, hosts)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"+    extraArgs:", "-    - --listen-client-urls=https://10.0.0.6:2379", "+    - --listen-client-urls=https://127.0.0.1:2379,https://10.0.0.6:2379"} {
		if !strings.Contains(d, want) {
			t.Errorf("the differences lack %q:\n%s", want, d)
		}
	}
	// The printed inventory has none.
	again, err := Analyze(res.Inventory, hosts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := Differences(res.Inventory, again, hosts); d != "" {
		t.Errorf("the adopted inventory still differs:\n%s", d)
	}
}

// The PKI written locally is the hosts' own, laid out as certs generate
// lays it out: certs.Compute then reuses every certificate.
func TestAdoptedPKIIsReusedAsItIs(t *testing.T) {
	c, hosts := guide(t, guideOptions)
	res, err := Analyze(c, hosts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p, err := certs.Adopted(res.Inventory, res.CA, res.Leaves, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Save(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(c.PKIDir(), "etcd", "ca.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key: %v %v", st, err)
	}
	again, events, err := certs.Compute(res.Inventory, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if e.Action != certs.Reused {
			t.Errorf("%s %s: %s (%s)", e.Host, e.Name, e.Action, e.Reason)
		}
	}
	for i, n := range nodes {
		kp, _ := again.Leaf(n.Name, certs.EtcdServer)
		if string(kp.CertPEM) != string(hosts[i].Files["/etc/kubernetes/pki/etcd/server.crt"]) {
			t.Errorf("%s: server.crt is not the host's", n.Name)
		}
	}
}

func refused(t *testing.T, err error, want ...string) {
	t.Helper()
	var r *Refusal
	if !errors.As(err, &r) {
		t.Fatalf("got %v, want a refusal", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("the refusal lacks %q:\n%v", w, err)
		}
	}
}

// A host carrying another CA, and its certificates, are named.
func TestAnotherCAIsRefusedNamingTheHostAndFile(t *testing.T) {
	c, hosts := guide(t, guideOptions)
	other, err := kubeadmguide.Build(t.TempDir(), nodes, guideOptions)
	if err != nil {
		t.Fatal(err)
	}
	for p, f := range other["infra2"] {
		hosts[2].Files[p] = f.Data
	}
	_, err = Analyze(c, hosts, time.Now())
	refused(t, err, "infra2: /etc/kubernetes/pki/etcd/ca.crt is another CA", "than infra0, infra1's", "infra2: /etc/kubernetes/pki/etcd/server.crt was not issued by the etcd CA")
}

// A member's certificate the CA did not issue is refused, even under the right ca.crt.
func TestLeafOfAnotherCAIsRefused(t *testing.T) {
	c, hosts := guide(t, guideOptions)
	other, err := kubeadmguide.Build(t.TempDir(), nodes, guideOptions)
	if err != nil {
		t.Fatal(err)
	}
	hosts[1].Files["/etc/kubernetes/pki/etcd/peer.crt"] = other["infra1"]["/etc/kubernetes/pki/etcd/peer.crt"].Data
	hosts[1].Files["/etc/kubernetes/pki/etcd/peer.key"] = other["infra1"]["/etc/kubernetes/pki/etcd/peer.key"].Data
	_, err = Analyze(c, hosts, time.Now())
	refused(t, err, "infra1: /etc/kubernetes/pki/etcd/peer.crt was not issued by the etcd CA")
}

func TestNoCAKeyAnywhereIsRefused(t *testing.T) {
	c, hosts := guide(t, guideOptions)
	delete(hosts[0].Files, "/etc/kubernetes/pki/etcd/ca.key")
	_, err := Analyze(c, hosts, time.Now())
	refused(t, err, "no host holds the CA's key /etc/kubernetes/pki/etcd/ca.key")
}

func TestOtherLayoutsAreRefused(t *testing.T) {
	c, hosts := guide(t, guideOptions)
	delete(hosts[1].Files, kubeadmguide.Manifest)
	delete(hosts[2].Files, kubelet.DropInPath)
	_, err := Analyze(c, hosts, time.Now())
	refused(t, err, "infra1: neither /etc/kubernetes/manifests/etcd.yaml nor /etc/etcd/etcd.env", "infra2: /etc/kubernetes/manifests/etcd.yaml runs without a kube-apiserver beside it, but /etc/systemd/system/kubelet.service.d/20-etcd-service-manager.conf is missing")
}

// A manifest no inventory writes byte for byte (here, edited by hand) is
// refused with the lines that differ.
func TestUnrenderableManifestIsRefusedWithItsDiff(t *testing.T) {
	c, hosts := guide(t, guideOptions)
	m := string(hosts[0].Files[kubeadmguide.Manifest])
	hosts[0].Files[kubeadmguide.Manifest] = []byte(strings.Replace(m, "    imagePullPolicy: IfNotPresent\n", "    imagePullPolicy: Always\n", 1))
	_, err := Analyze(c, hosts, time.Now())
	refused(t, err, "infra0: /etc/kubernetes/manifests/etcd.yaml cannot be written byte for byte", "-    imagePullPolicy: Always", "+    imagePullPolicy: IfNotPresent")
}

// Flags every member has alike become spec.etcd.extraArgs, the others the
// host's own.
func TestCommonFlagsBecomeTheClusters(t *testing.T) {
	c, hosts := guide(t, guideOptions)
	for i := range hosts {
		m := string(hosts[i].Files[kubeadmguide.Manifest])
		hosts[i].Files[kubeadmguide.Manifest] = []byte(strings.Replace(m, "    - --initial-cluster-state=new\n", "    - --initial-cluster-state=new\n    - --quota-backend-bytes=8589934592\n", 1))
	}
	res, err := Analyze(c, hosts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Inventory.Spec.Etcd.ExtraArgs["quota-backend-bytes"]; got != "8589934592" {
		t.Errorf("spec.etcd.extraArgs %v", res.Inventory.Spec.Etcd.ExtraArgs)
	}
	if n := len(res.Inventory.Spec.Hosts[0].ExtraArgs); n != 5 {
		t.Errorf("host extraArgs %v", res.Inventory.Spec.Hosts[0].ExtraArgs)
	}
}

func TestMembersAndHostsMustMatch(t *testing.T) {
	c := inventory(t, t.TempDir(), nodes)
	member := func(id uint64, n kubeadmguide.Node) etcdclient.Member {
		return etcdclient.Member{ID: id, Name: n.Name, PeerURLs: []string{"https://" + n.Address + ":2380"}}
	}
	if err := CheckMembers(c, []etcdclient.Member{member(1, nodes[0]), member(2, nodes[1]), member(3, nodes[2])}); err != nil {
		t.Fatal(err)
	}
	stranger := kubeadmguide.Node{Name: "infra9", Address: "10.0.0.9"}
	err := CheckMembers(c, []etcdclient.Member{member(1, nodes[0]), member(2, nodes[1]), member(9, stranger)})
	refused(t, err, "member 9 infra9 (peer URLs https://10.0.0.9:2380) is not in the inventory", "infra2: not a member: no member has the peer URL "+manifests.PeerURL(c.Spec.Hosts[2]))
}

func TestUnified(t *testing.T) {
	got := Unified("a", "b", []byte("1\n2\n3\n4\n5\n6\n7\n8\n9\n"), []byte("1\n2\n3\n4\nfive\n6\n7\n8\n9\n"))
	want := "--- a\n+++ b\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// A stacked control plane as kubeadm init and join make it: the first
// member's --initial-cluster names it alone, without a state; the others'
// list the members and "existing"; both among kubeadm's sorted defaults.
// Adopted, each is rendered byte for byte in kubeadm's order.
func TestKubeadmInitAndJoinOrderIsKept(t *testing.T) {
	o := kubeadmguide.Options{KubernetesVersion: "v1.37.2", KubeadmJoin: true}
	work := t.TempDir()
	built, err := kubeadmguide.Build(work, nodes, o)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(nodes); i++ {
		b, err := kubeadmguide.JoinManifest(work, nodes, i, o, nodes[:i+1])
		if err != nil {
			t.Fatal(err)
		}
		built[nodes[i].Name][kubeadmguide.Manifest] = kubeadmguide.File{Data: b, Mode: 0o600}
	}
	hosts := toHosts(built, nodes)
	for _, h := range hosts {
		h.Files["/etc/kubernetes/manifests/kube-apiserver.yaml"] = []byte("kind: Pod\n")
	}
	res, err := Analyze(inventory(t, t.TempDir(), nodes), hosts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res.Layout != LayoutStacked || res.Inventory.Spec.Topology != config.TopologyStacked {
		t.Errorf("layout %q", res.Layout)
	}
	if st := res.Members["infra0"]; !st.KubeadmOrder || st.State != "" || st.InitialCluster != "infra0=https://10.0.0.6:2380" {
		t.Errorf("infra0 started as %+v", st)
	}
	if st := res.Members["infra2"]; !st.KubeadmOrder || st.State != "existing" || !strings.Contains(st.InitialCluster, "infra1=https://10.0.0.7:2380") {
		t.Errorf("infra2 started as %+v", st)
	}
	for i, h := range res.Inventory.Spec.Hosts {
		if len(h.ExtraArgs) != 0 {
			t.Errorf("%s: extraArgs %v, kubeadm init and join set none", h.Name, h.ExtraArgs)
		}
		_, ours, err := Render(res.Inventory, h, res.Members[h.Name], hosts[i])
		if err != nil {
			t.Fatal(err)
		}
		if string(ours) != string(hosts[i].Files[kubeadmguide.Manifest]) {
			t.Errorf("%s:\n%s", h.Name, Unified("kubeadm", "etcdadm", hosts[i].Files[kubeadmguide.Manifest], ours))
		}
	}
}

// A control-plane host's apiserver-etcd-client is adopted with the rest;
// one that trusts another CA is refused.
func TestControlPlaneHostsClientCertificate(t *testing.T) {
	_, hosts := guide(t, guideOptions)
	dir := t.TempDir()
	doc := "apiVersion: etcdadm/v1alpha1\nkind: Cluster\nmetadata: {name: guide}\nspec:\n  kubernetesVersion: v1.37.2\n  hosts:\n"
	for _, n := range nodes {
		doc += "  - {name: " + n.Name + ", address: " + n.Address + "}\n"
	}
	doc += "  controlPlane:\n    hosts:\n    - {name: cp0, address: 10.0.0.20}\n"
	c, _, err := config.Parse([]byte(doc), "cluster.yaml", dir)
	if err != nil {
		t.Fatal(err)
	}
	cp := Host{Name: "cp0", Files: map[string][]byte{}}
	for _, p := range []string{"/etc/kubernetes/pki/etcd/ca.crt", "/etc/kubernetes/pki/apiserver-etcd-client.crt", "/etc/kubernetes/pki/apiserver-etcd-client.key"} {
		cp.Files[p] = hosts[0].Files[p]
	}
	res, err := Analyze(c, append(hosts, cp), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Leaves["cp0"][certs.APIServerEtcdClient].CertPEM; string(got) != string(cp.Files["/etc/kubernetes/pki/apiserver-etcd-client.crt"]) {
		t.Error("cp0's client certificate was not adopted")
	}
	other, err := kubeadmguide.Build(t.TempDir(), nodes[:1], guideOptions)
	if err != nil {
		t.Fatal(err)
	}
	cp.Files["/etc/kubernetes/pki/etcd/ca.crt"] = other["infra0"]["/etc/kubernetes/pki/etcd/ca.crt"].Data
	_, err = Analyze(c, append(hosts, cp), time.Now())
	refused(t, err, "cp0: /etc/kubernetes/pki/etcd/ca.crt is not the members' etcd CA")
}

// A SAN the inventory wants and the running certificates lack shows in
// the differences; the adopted inventory drops it.
func TestSANDifferences(t *testing.T) {
	_, hosts := guide(t, guideOptions)
	doc := "apiVersion: etcdadm/v1alpha1\nkind: Cluster\nmetadata: {name: guide}\nspec:\n  kubernetesVersion: v1.37.2\n  etcd: {serverCertSANs: [etcd.example.com]}\n  hosts:\n"
	for _, n := range nodes {
		doc += "  - {name: " + n.Name + ", address: " + n.Address + "}\n"
	}
	c, _, err := config.Parse([]byte(doc), "cluster.yaml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	res, err := Analyze(c, hosts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Inventory.Spec.Etcd.ServerCertSANs) != 0 {
		t.Errorf("adopted serverCertSANs %v", res.Inventory.Spec.Etcd.ServerCertSANs)
	}
	d, err := Differences(c, res, hosts)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--- infra1:/etc/kubernetes/pki/etcd/server.crt SANs (running)", "+DNS:etcd.example.com", "-    - etcd.example.com"} {
		if !strings.Contains(d, want) {
			t.Errorf("the differences lack %q:\n%s", want, d)
		}
	}
}
