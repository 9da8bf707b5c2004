// Package manifests builds the etcd static Pod exactly as kubeadm v1.37's
// `init phase etcd local` does, from k8s.io/api/core/v1 objects.
// It is a leaf: it imports nothing of etcdadm's but the inventory.
package manifests

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/etcdadm-io/etcdadm/pkg/config"
)

// Host paths and ports kubeadm uses for etcd.
const (
	CertificatesDir = "/etc/kubernetes/pki"
	EtcdPKIDir      = CertificatesDir + "/etcd"
	ManifestName    = "etcd.yaml"
	ClientPort      = 2379
	PeerPort        = 2380
	MetricsPort     = 2381
	// AdvertiseClientURLsAnnotation is how kubeadm finds etcd's client URL from its Pod.
	AdvertiseClientURLsAnnotation = "kubeadm.kubernetes.io/etcd.advertise-client-urls"
	// RestartAnnotation records etcdadm's last restart of a member. The
	// kubelet names a static Pod after its content, so a new value makes a
	// new Pod, which starts at once, free of the restart back-off the
	// kubelet keeps per Pod.
	RestartAnnotation = "etcdadm.io/restart"
	// controlPlaneComponentHealthCheck is kubeadm v1beta4's default
	// timeouts.controlPlaneComponentHealthCheck, which sizes the startup probe.
	controlPlaneComponentHealthCheckSeconds = 4 * 60
	probePortName                           = "probe-port"
	dataVolume                              = "etcd-data"
	certsVolume                             = "etcd-certs"
)

// Initial cluster states etcd knows.
const (
	StateNew      = "new"
	StateExisting = "existing"
)

// Arg is one etcd flag without its leading dashes.
type Arg struct {
	Name  string
	Value string
}

// ClientURL is the member's advertised client URL.
func ClientURL(h config.Host) string {
	return "https://" + net.JoinHostPort(h.Address, strconv.Itoa(ClientPort))
}

// PeerURL is the member's advertised peer URL.
func PeerURL(h config.Host) string {
	return "https://" + net.JoinHostPort(h.Address, strconv.Itoa(PeerPort))
}

// InitialCluster is etcd's --initial-cluster value for the given members.
func InitialCluster(members []config.Host) string {
	parts := make([]string, len(members))
	for i, m := range members {
		parts[i] = m.Name + "=" + PeerURL(m)
	}
	return strings.Join(parts, ",")
}

// ExtraArgs are the flags etcdadm adds to kubeadm's defaults for member h,
// in the order they go into kubeadmcfg.yaml: the initial cluster first, then
// the inventory's extraArgs sorted by name, then the host's own in its order
// (as the guide's per-host kubeadmcfg.yaml lists them).
func ExtraArgs(c *config.Cluster, h config.Host, initialCluster, state string) []Arg {
	args := []Arg{
		{Name: "initial-cluster", Value: initialCluster},
		{Name: "initial-cluster-state", Value: state},
	}
	names := make([]string, 0, len(c.Spec.Etcd.ExtraArgs))
	for k := range c.Spec.Etcd.ExtraArgs {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		args = append(args, Arg{Name: k, Value: c.Spec.Etcd.ExtraArgs[k]})
	}
	for _, a := range h.ExtraArgs {
		args = append(args, Arg{Name: a.Name, Value: a.Value})
	}
	return args
}

func loopback(h config.Host) string {
	if ip := net.ParseIP(h.Address); ip != nil && ip.To4() == nil {
		return "::1"
	}
	return "127.0.0.1"
}

// DefaultArgs are kubeadm's flags for a member that starts a cluster on its own.
func DefaultArgs(c *config.Cluster, h config.Host) []Arg {
	lo := loopback(h)
	return []Arg{
		{"name", h.Name},
		{"listen-client-urls", "https://" + net.JoinHostPort(lo, strconv.Itoa(ClientPort)) + "," + ClientURL(h)},
		{"advertise-client-urls", ClientURL(h)},
		{"listen-peer-urls", PeerURL(h)},
		{"initial-advertise-peer-urls", PeerURL(h)},
		{"data-dir", c.Spec.Etcd.DataDir},
		{"cert-file", EtcdPKIDir + "/server.crt"},
		{"key-file", EtcdPKIDir + "/server.key"},
		{"trusted-ca-file", EtcdPKIDir + "/ca.crt"},
		{"client-cert-auth", "true"},
		{"peer-cert-file", EtcdPKIDir + "/peer.crt"},
		{"peer-key-file", EtcdPKIDir + "/peer.key"},
		{"peer-trusted-ca-file", EtcdPKIDir + "/ca.crt"},
		{"peer-client-cert-auth", "true"},
		{"snapshot-count", "10000"},
		{"listen-metrics-urls", "http://" + net.JoinHostPort(lo, strconv.Itoa(MetricsPort))},
		{"feature-gates", "InitialCorruptCheck=true"},
		{"watch-progress-notify-interval", "5s"},
		{"initial-cluster", h.Name + "=" + PeerURL(h)},
	}
}

// Command merges flags as kubeadm v1.37 does: the defaults sorted by name
// (then value), minus every flag that extra overrides, followed by extra in
// its own order.
func Command(defaults, extra []Arg) []string {
	base := slices.Clone(defaults)
	slices.SortStableFunc(base, func(a, b Arg) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Value, b.Value)
	})
	overridden := map[string]bool{}
	for _, a := range extra {
		overridden[a.Name] = true
	}
	cmd := make([]string, 0, len(base)+len(extra))
	for _, a := range base {
		if !overridden[a.Name] {
			cmd = append(cmd, "--"+a.Name+"="+a.Value)
		}
	}
	for _, a := range extra {
		cmd = append(cmd, "--"+a.Name+"="+a.Value)
	}
	return cmd
}

// Flags are the flags of member h's etcd, without the command: what its
// static Pod's container runs etcd with, and what the systemd runtime's
// environment file passes to etcd.
func Flags(c *config.Cluster, h config.Host, initialCluster, state string) []string {
	return Command(DefaultArgs(c, h), ExtraArgs(c, h, initialCluster, state))
}

// EtcdPod is the static Pod of member h; initialCluster is the
// --initial-cluster it starts with (see InitialCluster) and state is
// StateNew or StateExisting.
func EtcdPod(c *config.Cluster, h config.Host, initialCluster, state string) *corev1.Pod {
	return etcdPod(c, h, DefaultArgs(c, h), ExtraArgs(c, h, initialCluster, state))
}

// EtcdPodKubeadmOrder is EtcdPod with --initial-cluster and its state
// (none when state is empty) among the sorted defaults, as kubeadm init
// and join write them for a stacked member.
func EtcdPodKubeadmOrder(c *config.Cluster, h config.Host, initialCluster, state string) *corev1.Pod {
	defaults := DefaultArgs(c, h)
	for i := range defaults {
		if defaults[i].Name == "initial-cluster" {
			defaults[i].Value = initialCluster
		}
	}
	if state != "" {
		defaults = append(defaults, Arg{"initial-cluster-state", state})
	}
	extra := ExtraArgs(c, h, initialCluster, state)[2:]
	return etcdPod(c, h, defaults, extra)
}

func etcdPod(c *config.Cluster, h config.Host, defaults, extra []Arg) *corev1.Pod {
	probeHost, probePort, probeScheme := probeEndpoint(extra, loopback(h))
	dirOrCreate := corev1.HostPathDirectoryOrCreate
	priority := int32(2000001000)
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        "etcd",
			Namespace:   metav1.NamespaceSystem,
			Labels:      map[string]string{"component": "etcd", "tier": "control-plane"},
			Annotations: map[string]string{AdvertiseClientURLsAnnotation: ClientURL(h)},
		},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:            "etcd",
				Command:         append([]string{"etcd"}, Command(defaults, extra)...),
				Image:           c.EtcdImage(),
				ImagePullPolicy: corev1.PullIfNotPresent,
				VolumeMounts: []corev1.VolumeMount{
					{Name: dataVolume, MountPath: c.Spec.Etcd.DataDir},
					{Name: certsVolume, MountPath: EtcdPKIDir},
				},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU:    resource.MustParse("100m"),
					corev1.ResourceMemory: resource.MustParse("100Mi"),
				}},
				LivenessProbe:  httpProbe(probeHost, "/livez", probeScheme, 10, 15, 8, 10),
				ReadinessProbe: httpProbe(probeHost, "/readyz", probeScheme, 0, 15, 3, 1),
				StartupProbe: httpProbe(probeHost, "/readyz", probeScheme, 10, 15,
					int32(math.Ceil(float64(controlPlaneComponentHealthCheckSeconds)/10)), 10),
				Ports: []corev1.ContainerPort{{Name: probePortName, ContainerPort: probePort, Protocol: corev1.ProtocolTCP}},
			}},
			Priority:          &priority,
			PriorityClassName: "system-node-critical",
			HostNetwork:       true,
			// Sorted by name, as kubeadm lists its volume map.
			Volumes: []corev1.Volume{
				hostPathVolume(certsVolume, EtcdPKIDir, &dirOrCreate),
				hostPathVolume(dataVolume, c.Spec.Etcd.DataDir, &dirOrCreate),
			},
			SecurityContext: &corev1.PodSecurityContext{
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
		},
	}
}

// Marshal serializes a Pod as kubeadm writes it.
func Marshal(pod *corev1.Pod) ([]byte, error) {
	b, err := yaml.Marshal(pod)
	if err != nil {
		return nil, fmt.Errorf("marshal pod %s: %w", pod.Name, err)
	}
	return b, nil
}

// ManifestPath is where the member's static Pod goes on its host.
func ManifestPath(c *config.Cluster) string {
	return path.Join(c.Spec.Kubelet.StaticPodPath, ManifestName)
}

func hostPathVolume(name, p string, t *corev1.HostPathType) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: p, Type: t}}}
}

func httpProbe(host, p string, scheme corev1.URIScheme, initialDelay, timeout, failure, period int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Host: host, Path: p, Port: intstr.FromString(probePortName), Scheme: scheme,
		}},
		InitialDelaySeconds: initialDelay,
		TimeoutSeconds:      timeout,
		FailureThreshold:    failure,
		PeriodSeconds:       period,
	}
}

// probeEndpoint follows a --listen-metrics-urls override as kubeadm does: the
// first URL decides host, port and scheme of the probes.
func probeEndpoint(extra []Arg, lo string) (string, int32, corev1.URIScheme) {
	value, found := "", false
	for _, a := range extra {
		if a.Name == "listen-metrics-urls" {
			value, found = a.Value, true
		}
	}
	if !found {
		return lo, MetricsPort, corev1.URISchemeHTTP
	}
	u, err := url.Parse(strings.Split(value, ",")[0])
	if err != nil {
		return lo, MetricsPort, corev1.URISchemeHTTP
	}
	scheme := corev1.URISchemeHTTP
	if u.Scheme == "https" {
		scheme = corev1.URISchemeHTTPS
	}
	host := u.Hostname()
	if host == "" {
		host = lo
	}
	port := int32(MetricsPort)
	if p, err := strconv.ParseUint(u.Port(), 10, 16); err == nil && p > 0 {
		port = int32(p)
	}
	return host, port, scheme
}
