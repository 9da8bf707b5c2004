// Package apiserver reads and edits the kube-apiserver static Pod kubeadm
// writes, and asks a kube-apiserver whether it is ready: what etcdadm
// needs to keep the apiservers of a cluster pointed at its members.
// Manifests are edited as typed objects (k8s.io/api/core/v1): one flag
// changes, and the Pod is written back as kubeadm writes it.
//
// It is a leaf: it imports nothing of etcdadm's.
package apiserver

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// Where kubeadm puts the control plane's static Pods, and their names.
const (
	ManifestsDir              = "/etc/kubernetes/manifests"
	ManifestName              = "kube-apiserver.yaml"
	ControllerManagerManifest = "kube-controller-manager.yaml"
	SchedulerManifest         = "kube-scheduler.yaml"
	// AdminConf is the cluster administrator's kubeconfig kubeadm writes
	// on every control-plane host.
	AdminConf = "/etc/kubernetes/admin.conf"
	// DefaultPort is kubeadm's --secure-port.
	DefaultPort = 6443
	// RestartAnnotation records etcdadm's last restart of the Pod: the
	// kubelet names a static Pod after its content, so a new value makes
	// a new Pod, which it starts at once.
	RestartAnnotation = "etcdadm.io/restart"
	container         = "kube-apiserver"
	etcdServersFlag   = "--etcd-servers="
)

// ControlPlaneManifests are the static Pods of kubeadm's control plane that
// watch etcd through the API: what a restore stops and starts again.
var ControlPlaneManifests = []string{ManifestName, ControllerManagerManifest, SchedulerManifest}

// ManifestPath is the kube-apiserver's static Pod in the manifests dir.
func ManifestPath(dir string) string { return path.Join(dir, ManifestName) }

// Manifest is what a kube-apiserver static Pod says of how it reaches
// etcd and where it serves.
type Manifest struct {
	Data []byte `json:"-"`
	// Err is set when the file is not a kube-apiserver Pod.
	Err string `json:"error,omitempty"`
	// EtcdServers is --etcd-servers, split at its commas.
	EtcdServers []string `json:"etcdServers,omitempty"`
	EtcdCAFile  string   `json:"etcdCAFile,omitempty"`
	EtcdCert    string   `json:"etcdCertFile,omitempty"`
	EtcdKey     string   `json:"etcdKeyFile,omitempty"`
	// Address and Port are where it serves (--advertise-address,
	// --secure-port); ClientCA the CA of its serving certificate's
	// clients, kubeadm's cluster CA (--client-ca-file).
	Address  string `json:"advertiseAddress,omitempty"`
	Port     int    `json:"securePort,omitempty"`
	ClientCA string `json:"clientCAFile,omitempty"`
	// Restart is the Pod's etcdadm.io/restart annotation.
	Restart string `json:"restart,omitempty"`
}

// Parse reads a kube-apiserver static Pod.
func Parse(data []byte) *Manifest {
	m := &Manifest{Data: data, Port: DefaultPort}
	pod, c, err := decode(data)
	if err != nil {
		m.Err = err.Error()
		return m
	}
	m.Restart = pod.Annotations[RestartAnnotation]
	for _, arg := range append(append([]string(nil), c.Command...), c.Args...) {
		name, value, ok := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
		if !ok || !strings.HasPrefix(arg, "--") {
			continue
		}
		switch name {
		case "etcd-servers":
			m.EtcdServers = SplitServers(value)
		case "etcd-cafile":
			m.EtcdCAFile = value
		case "etcd-certfile":
			m.EtcdCert = value
		case "etcd-keyfile":
			m.EtcdKey = value
		case "advertise-address":
			m.Address = value
		case "client-ca-file":
			m.ClientCA = value
		case "secure-port":
			if p, err := strconv.Atoi(value); err == nil {
				m.Port = p
			}
		}
	}
	return m
}

// SplitServers splits an --etcd-servers value at its commas.
func SplitServers(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// decode reads data as a Pod and finds its kube-apiserver container.
func decode(data []byte) (*corev1.Pod, *corev1.Container, error) {
	var pod corev1.Pod
	if err := yaml.Unmarshal(data, &pod); err != nil {
		return nil, nil, fmt.Errorf("not a Pod: %w", err)
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == container {
			return &pod, &pod.Spec.Containers[i], nil
		}
	}
	return nil, nil, fmt.Errorf("no container named %s", container)
}

// marshal writes a Pod as kubeadm does (kubeadmutil.MarshalToYaml: the
// object's JSON, as YAML).
func marshal(pod *corev1.Pod) ([]byte, error) {
	b, err := yaml.Marshal(pod)
	if err != nil {
		return nil, fmt.Errorf("marshal pod %s: %w", pod.Name, err)
	}
	return b, nil
}

// RoundTrips reports whether data is a Pod exactly as kubeadm writes it:
// read and written back unchanged, byte for byte. An edit of a file that
// does not round-trip rewrites it in kubeadm's layout.
func RoundTrips(data []byte) bool {
	pod, _, err := decode(data)
	if err != nil {
		return false
	}
	b, err := marshal(pod)
	return err == nil && string(b) == string(data)
}

// SetEtcdServers returns the Pod data with --etcd-servers set to servers,
// joined by commas as kubeadm joins etcd.external.endpoints, and nothing
// else changed. A Pod without the flag gets it after the command's last
// flag that sorts before it, where kubeadm's sorted flags would put it.
func SetEtcdServers(data []byte, servers []string) ([]byte, error) {
	if len(servers) == 0 {
		return nil, fmt.Errorf("set --etcd-servers: no server")
	}
	pod, c, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("set --etcd-servers: %w", err)
	}
	flag := etcdServersFlag + strings.Join(servers, ",")
	if !replaceFlag(&c.Command, flag) && !replaceFlag(&c.Args, flag) {
		at := len(c.Command)
		for i := 1; i < len(c.Command); i++ {
			if c.Command[i] > flag {
				at = i
				break
			}
		}
		c.Command = append(c.Command[:at], append([]string{flag}, c.Command[at:]...)...)
	}
	return marshal(pod)
}

func replaceFlag(args *[]string, flag string) bool {
	for i, a := range *args {
		if strings.HasPrefix(a, etcdServersFlag) {
			(*args)[i] = flag
			return true
		}
	}
	return false
}

// WithRestart returns the Pod data with its etcdadm.io/restart annotation
// set to stamp: a new Pod for the kubelet, started at once.
func WithRestart(data []byte, stamp string) ([]byte, error) {
	pod, _, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("restart annotation: %w", err)
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[RestartAnnotation] = stamp
	return marshal(pod)
}

// Servers says whether the kube-apiserver uses exactly the members' client
// URLs, in any order.
func (m *Manifest) Servers(want []string) bool {
	if len(m.EtcdServers) != len(want) {
		return false
	}
	seen := map[string]bool{}
	for _, s := range m.EtcdServers {
		seen[s] = true
	}
	for _, s := range want {
		if !seen[s] {
			return false
		}
	}
	return true
}

// Loopback reports whether the kube-apiserver reaches etcd on this host
// only (kubeadm's stacked control plane: https://127.0.0.1:2379).
func (m *Manifest) Loopback() bool {
	if len(m.EtcdServers) == 0 {
		return false
	}
	for _, s := range m.EtcdServers {
		if !strings.Contains(s, "://127.0.0.1:") && !strings.Contains(s, "://[::1]:") && !strings.Contains(s, "://localhost:") {
			return false
		}
	}
	return true
}
