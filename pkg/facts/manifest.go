package facts

import (
	"strings"

	"github.com/etcdadm-io/etcdadm/pkg/etcdservice"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// Manifest is what an etcd static Pod on a host says about its member.
type Manifest struct {
	Data []byte `json:"-"`
	// Err is set when the file is not an etcd Pod etcdadm can read.
	Err                 string `json:"error,omitempty"`
	Name                string `json:"name,omitempty"`
	InitialCluster      string `json:"initialCluster,omitempty"`
	InitialClusterState string `json:"initialClusterState,omitempty"`
	Image               string `json:"image,omitempty"`
	DataDir             string `json:"dataDir,omitempty"`
	// Restart is the Pod's etcdadm.io/restart annotation.
	Restart string `json:"restart,omitempty"`
	// Flags are the etcd command's flags, without their dashes.
	Flags map[string]string `json:"-"`
	// KubeadmOrder says the command lists --initial-cluster (and its
	// state) among kubeadm's sorted defaults, as kubeadm init and join
	// write it, rather than after them, as etcdadm does.
	KubeadmOrder bool `json:"kubeadmOrder,omitempty"`
}

// ParseManifest reads an etcd static Pod.
func ParseManifest(data []byte) *Manifest {
	m := &Manifest{Data: data, Flags: map[string]string{}}
	var pod corev1.Pod
	if err := yaml.Unmarshal(data, &pod); err != nil {
		m.Err = "not a Pod: " + err.Error()
		return m
	}
	m.Restart = pod.Annotations["etcdadm.io/restart"]
	for _, c := range pod.Spec.Containers {
		if c.Name != "etcd" {
			continue
		}
		m.Image = c.Image
		m.setFlags(append(append([]string(nil), c.Command...), c.Args...))
		return m
	}
	m.Err = "no container named etcd"
	return m
}

// ParseInitialCluster splits name=url,name=url into names and their URLs.
func ParseInitialCluster(s string) map[string][]string {
	out := map[string][]string{}
	for _, part := range strings.Split(s, ",") {
		name, u, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || name == "" {
			continue
		}
		out[name] = append(out[name], u)
	}
	return out
}

// ParseEnvFile reads the environment file of an etcd systemd service as
// the Manifest it stands for: the member's flags. It has no image and no
// restart annotation.
func ParseEnvFile(data []byte) *Manifest {
	m := &Manifest{Data: data, Flags: map[string]string{}}
	args, err := etcdservice.ParseEnvFile(data)
	if err != nil {
		m.Err = "not etcd's environment file: " + err.Error()
		return m
	}
	m.setFlags(args)
	return m
}

// setFlags reads --name=value arguments into the manifest's flags.
func (m *Manifest) setFlags(args []string) {
	m.KubeadmOrder = kubeadmOrder(args)
	for _, arg := range args {
		name, value, ok := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
		if !ok || !strings.HasPrefix(arg, "--") {
			continue
		}
		m.Flags[name] = value
	}
	m.Name = m.Flags["name"]
	m.InitialCluster = m.Flags["initial-cluster"]
	m.InitialClusterState = m.Flags["initial-cluster-state"]
	m.DataDir = m.Flags["data-dir"]
}

// kubeadmOrder reports whether --initial-cluster sits among flags sorted by
// name from the first: where kubeadm's own etcd phases put it. etcdadm puts
// it after the sorted defaults, behind flags such as --key-file.
func kubeadmOrder(args []string) bool {
	prev := ""
	for _, arg := range args {
		if !strings.HasPrefix(arg, "--") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
		if name < prev {
			return false
		}
		if name == "initial-cluster" {
			return true
		}
		prev = name
	}
	return false
}
