// Package kubeadmguide makes, for tests, the files of an etcd cluster set
// up by hand with kubeadm v1.37's own phases, called as Go code, as
// kubeadm's "Set up a High Availability etcd cluster with kubeadm" guide
// does: a kubeadmcfg.yaml per host, `kubeadm init phase certs etcd-ca`
// once, then etcd-server, etcd-peer, etcd-healthcheck-client and
// apiserver-etcd-client per host from that CA, the CA key deleted from the
// copies of every host but the first, `kubeadm init phase etcd local`, and
// the guide's kubelet drop-ins. It is a test double: product code never
// imports it.
package kubeadmguide

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	kubeadmapi "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm"
	certsphase "k8s.io/kubernetes/cmd/kubeadm/app/phases/certs"
	etcdphase "k8s.io/kubernetes/cmd/kubeadm/app/phases/etcd"
	configutil "k8s.io/kubernetes/cmd/kubeadm/app/util/config"
	etcdutil "k8s.io/kubernetes/cmd/kubeadm/app/util/etcd"
	staticpodutil "k8s.io/kubernetes/cmd/kubeadm/app/util/staticpod"
)

// Node is one etcd host of the guide: HOSTS[i] and NAMES[i].
type Node struct {
	Name, Address string
}

// File is a file of a host, as kubeadm or the guide leaves it.
type File struct {
	Data []byte
	Mode fs.FileMode
}

// Options vary the guide.
type Options struct {
	// KubernetesVersion goes into the ClusterConfiguration, so that
	// kubeadm does not ask the internet for "stable-1".
	KubernetesVersion string
	// CgroupDriver and KubeletExtra are the kubelet.conf's cgroup driver
	// (the guide says to replace systemd with the runtime's) and lines
	// added after its fields.
	CgroupDriver string
	KubeletExtra string
	// Stacked leaves --listen-client-urls to kubeadm (loopback and the
	// host's address, which a kube-apiserver beside it reaches) and writes
	// no kubelet drop-in: the kubelet is kubeadm's.
	Stacked bool
	// KubeadmJoin makes a stacked control plane as kubeadm init and join
	// make it, with no etcd extraArgs: the first host's static Pod is
	// init's (the host alone in --initial-cluster, no state); the others
	// get none from Build, but from Join, which adds them as learners.
	// Implies Stacked.
	KubeadmJoin bool
}

// Config is the guide's kubeadmcfg.yaml for host i of nodes.
func Config(nodes []Node, i int, o Options) string {
	var ic []string
	for _, n := range nodes {
		ic = append(ic, fmt.Sprintf("%s=https://%s:2380", n.Name, n.Address))
	}
	n := nodes[i]
	listen := fmt.Sprintf("        - name: listen-client-urls\n          value: https://%s:2379\n", n.Address)
	if o.Stacked || o.KubeadmJoin {
		listen = ""
	}
	if o.KubeadmJoin {
		return fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration: {name: %s}
localAPIEndpoint: {advertiseAddress: %s}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: %s
`, n.Name, n.Address, o.KubernetesVersion)
	}
	return fmt.Sprintf(`---
apiVersion: "kubeadm.k8s.io/v1beta4"
kind: InitConfiguration
nodeRegistration:
    name: %[1]s
localAPIEndpoint:
    advertiseAddress: %[2]s
---
apiVersion: "kubeadm.k8s.io/v1beta4"
kind: ClusterConfiguration
kubernetesVersion: %[4]s
etcd:
    local:
        serverCertSANs:
        - "%[2]s"
        peerCertSANs:
        - "%[2]s"
        extraArgs:
        - name: initial-cluster
          value: %[3]s
        - name: initial-cluster-state
          value: new
        - name: name
          value: %[1]s
        - name: listen-peer-urls
          value: https://%[2]s:2380
%[5]s        - name: advertise-client-urls
          value: https://%[2]s:2379
        - name: initial-advertise-peer-urls
          value: https://%[2]s:2380
`, n.Name, n.Address, strings.Join(ic, ","), o.KubernetesVersion, listen)
}

// KubeletConf is the guide's kubelet.conf, with o's cgroup driver and extra lines.
func KubeletConf(o Options) string {
	return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
cgroupDriver: ` + o.CgroupDriver + `
address: 127.0.0.1
containerRuntimeEndpoint: unix:///var/run/containerd/containerd.sock
staticPodPath: /etc/kubernetes/manifests
` + o.KubeletExtra
}

// DropIn is the guide's 20-etcd-service-manager.conf.
const DropIn = `[Service]
ExecStart=
ExecStart=/usr/bin/kubelet --config=/etc/systemd/system/kubelet.service.d/kubelet.conf
Restart=always
`

// Host paths of the guide.
const (
	PKIDir          = "/etc/kubernetes/pki"
	Manifest        = "/etc/kubernetes/manifests/etcd.yaml"
	KubeletConfPath = "/etc/systemd/system/kubelet.service.d/kubelet.conf"
	DropInPath      = "/etc/systemd/system/kubelet.service.d/20-etcd-service-manager.conf"
)

// Build runs the guide's kubeadm phases in work (a scratch directory) and
// returns every host's files by host path.
func Build(work string, nodes []Node, o Options) (map[string]map[string]File, error) {
	o.Stacked = o.Stacked || o.KubeadmJoin
	caDir := filepath.Join(work, "ca")
	cfg0, err := load(Config(nodes, 0, o))
	if err != nil {
		return nil, err
	}
	cfg0.CertificatesDir = caDir
	if err := certsphase.CreateCACertAndKeyFiles(certsphase.KubeadmCertEtcdCA(), cfg0); err != nil {
		return nil, fmt.Errorf("kubeadm init phase certs etcd-ca: %w", err)
	}
	out := map[string]map[string]File{}
	for i, n := range nodes {
		cfg, err := load(Config(nodes, i, o))
		if err != nil {
			return nil, err
		}
		pki := filepath.Join(work, n.Name, "pki")
		if err := os.MkdirAll(filepath.Join(pki, "etcd"), 0o700); err != nil {
			return nil, err
		}
		for _, f := range []string{"ca.crt", "ca.key"} {
			b, err := os.ReadFile(filepath.Join(caDir, "etcd", f))
			if err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(pki, "etcd", f), b, 0o600); err != nil {
				return nil, err
			}
		}
		cfg.CertificatesDir = pki
		for _, spec := range []*certsphase.KubeadmCert{certsphase.KubeadmCertEtcdServer(), certsphase.KubeadmCertEtcdPeer(), certsphase.KubeadmCertEtcdHealthcheck(), certsphase.KubeadmCertEtcdAPIClient()} {
			if err := certsphase.CreateCertAndKeyFilesWithCA(spec, certsphase.KubeadmCertEtcdCA(), cfg); err != nil {
				return nil, fmt.Errorf("kubeadm init phase certs %s on %s: %w", spec.Name, n.Name, err)
			}
		}
		files := map[string]File{}
		for _, rel := range []string{"etcd/ca.crt", "etcd/ca.key", "etcd/server.crt", "etcd/server.key", "etcd/peer.crt", "etcd/peer.key",
			"etcd/healthcheck-client.crt", "etcd/healthcheck-client.key", "apiserver-etcd-client.crt", "apiserver-etcd-client.key"} {
			// The guide deletes the CA key from every copy but the first host's.
			if rel == "etcd/ca.key" && i > 0 && !o.Stacked {
				continue
			}
			b, err := os.ReadFile(filepath.Join(pki, rel))
			if err != nil {
				return nil, err
			}
			mode := fs.FileMode(0o644)
			if strings.HasSuffix(rel, ".key") {
				mode = 0o600
			}
			files[PKIDir+"/"+rel] = File{Data: b, Mode: mode}
		}
		if !o.Stacked {
			files[KubeletConfPath] = File{Data: []byte(KubeletConf(o)), Mode: 0o644}
			files[DropInPath] = File{Data: []byte(DropIn), Mode: 0o644}
		}
		out[n.Name] = files
		if o.KubeadmJoin && i > 0 {
			continue
		}
		manifests := filepath.Join(work, n.Name, "manifests")
		cfg.CertificatesDir = PKIDir
		if err := etcdphase.CreateLocalEtcdStaticPodManifestFile(manifests, "", cfg.NodeRegistration.Name, &cfg.ClusterConfiguration, &cfg.LocalAPIEndpoint, false); err != nil {
			return nil, fmt.Errorf("kubeadm init phase etcd local on %s: %w", n.Name, err)
		}
		b, err := os.ReadFile(filepath.Join(manifests, "etcd.yaml"))
		if err != nil {
			return nil, err
		}
		files[Manifest] = File{Data: b, Mode: 0o600}
	}
	return out, nil
}

// JoinManifest is the static Pod kubeadm join's etcd phase writes for host
// i of a stacked control plane whose etcd lists members (host i last, as
// adding it returns them): kubeadm's own GetEtcdPodSpec, written by its
// WriteStaticPodToDisk.
func JoinManifest(work string, nodes []Node, i int, o Options, members []Node) ([]byte, error) {
	o.KubeadmJoin = true
	cfg, err := load(Config(nodes, i, o))
	if err != nil {
		return nil, err
	}
	cfg.CertificatesDir = PKIDir
	var initial []etcdutil.Member
	for _, m := range members {
		initial = append(initial, etcdutil.Member{Name: m.Name, PeerURL: etcdutil.GetPeerURL(&kubeadmapi.APIEndpoint{AdvertiseAddress: m.Address})})
	}
	pod := etcdphase.GetEtcdPodSpec(&cfg.ClusterConfiguration, &cfg.LocalAPIEndpoint, nodes[i].Name, initial)
	dir := filepath.Join(work, nodes[i].Name, "join")
	if err := staticpodutil.WriteStaticPodToDisk("etcd", dir, pod); err != nil {
		return nil, err
	}
	return os.ReadFile(filepath.Join(dir, "etcd.yaml"))
}

// Join does what kubeadm join's etcd phase does for host i, with
// kubeadm's own etcd client on the first host's member, authenticated as
// host i's healthcheck client: adds it as a learner, writes its static Pod
// (put places it on the host), then promotes it once it caught up.
func Join(work string, nodes []Node, i int, o Options, put func([]byte) error) error {
	pki := filepath.Join(work, nodes[i].Name, "pki", "etcd")
	cli, err := etcdutil.New([]string{etcdutil.GetClientURLByIP(nodes[0].Address)}, filepath.Join(pki, "ca.crt"), filepath.Join(pki, "healthcheck-client.crt"), filepath.Join(pki, "healthcheck-client.key"))
	if err != nil {
		return fmt.Errorf("kubeadm's etcd client: %w", err)
	}
	peer := etcdutil.GetPeerURL(&kubeadmapi.APIEndpoint{AdvertiseAddress: nodes[i].Address})
	members, err := cli.AddMemberAsLearner(nodes[i].Name, peer)
	if err != nil {
		return fmt.Errorf("add %s as a learner: %w", nodes[i].Name, err)
	}
	var listed []Node
	for _, m := range members {
		for _, n := range nodes {
			if etcdutil.GetPeerURL(&kubeadmapi.APIEndpoint{AdvertiseAddress: n.Address}) == m.PeerURL {
				listed = append(listed, Node{Name: m.Name, Address: n.Address})
			}
		}
	}
	b, err := JoinManifest(work, nodes, i, o, listed)
	if err != nil {
		return err
	}
	if err := put(b); err != nil {
		return err
	}
	id, err := cli.GetMemberID(peer)
	if err != nil {
		return err
	}
	if err := cli.MemberPromote(id); err != nil {
		return fmt.Errorf("promote %s: %w", nodes[i].Name, err)
	}
	return nil
}

func load(doc string) (*kubeadmapi.InitConfiguration, error) {
	cfg, err := configutil.BytesToInitConfiguration([]byte(doc), true)
	if err != nil {
		return nil, fmt.Errorf("kubeadm cannot load the guide's kubeadmcfg.yaml: %w\n%s", err, doc)
	}
	return cfg, nil
}
