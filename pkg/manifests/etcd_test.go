package manifests

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/etcdadm-io/etcdadm/pkg/config"
)

func TestCommandDropsOverriddenDefaultsAndAppendsExtraInOrder(t *testing.T) {
	got := Command(
		[]Arg{{"name", "a"}, {"snapshot-count", "10000"}, {"data-dir", "/d"}, {"initial-cluster", "a=x"}},
		[]Arg{{"initial-cluster", "a=x,b=y"}, {"snapshot-count", "5000"}, {"auto-compaction-retention", "8"}},
	)
	want := []string{"--data-dir=/d", "--name=a", "--initial-cluster=a=x,b=y", "--snapshot-count=5000", "--auto-compaction-retention=8"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestIPv6MemberUsesIPv6LoopbackAndBrackets(t *testing.T) {
	c, _, err := config.Parse([]byte(`apiVersion: etcdadm/v1alpha1
kind: Cluster
metadata: {name: v6}
spec:
  hosts:
  - {name: a, address: "fd00::1"}
`), "v6", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pod := EtcdPod(c, c.Spec.Hosts[0], InitialCluster(c.Spec.Hosts), StateNew)
	cmd := strings.Join(pod.Spec.Containers[0].Command, " ")
	for _, want := range []string{
		"--listen-client-urls=https://[::1]:2379,https://[fd00::1]:2379",
		"--listen-metrics-urls=http://[::1]:2381",
		"--initial-cluster=a=https://[fd00::1]:2380",
	} {
		if !strings.Contains(cmd, want) {
			t.Errorf("command lacks %s:\n%s", want, cmd)
		}
	}
	if h := pod.Spec.Containers[0].LivenessProbe.HTTPGet.Host; h != "::1" {
		t.Errorf("probe host %s", h)
	}
}

func TestProbeFollowsListenMetricsURLs(t *testing.T) {
	host, port, scheme := probeEndpoint([]Arg{{"listen-metrics-urls", "https://:2391,http://127.0.0.1:2381"}}, "127.0.0.1")
	if host != "127.0.0.1" || port != 2391 || scheme != corev1.URISchemeHTTPS {
		t.Errorf("got %s %d %s", host, port, scheme)
	}
	host, port, scheme = probeEndpoint(nil, "::1")
	if host != "::1" || port != 2381 || scheme != corev1.URISchemeHTTP {
		t.Errorf("default got %s %d %s", host, port, scheme)
	}
}

// The guide's kubeadmcfg.yaml sets five flags per host after the initial
// cluster: a host's extraArgs keep that order, after the cluster's.
func TestHostExtraArgsFollowTheClustersInTheirOrder(t *testing.T) {
	c, _, err := config.Parse([]byte(`apiVersion: etcdadm/v1alpha1
kind: Cluster
metadata: {name: guide}
spec:
  etcd: {extraArgs: {quota-backend-bytes: "8589934592"}}
  hosts:
  - name: infra0
    address: 10.0.0.6
    extraArgs:
    - {name: name, value: infra0}
    - {name: listen-peer-urls, value: "https://10.0.0.6:2380"}
    - {name: listen-client-urls, value: "https://10.0.0.6:2379"}
    - {name: advertise-client-urls, value: "https://10.0.0.6:2379"}
    - {name: initial-advertise-peer-urls, value: "https://10.0.0.6:2380"}
`), "guide", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cmd := EtcdPod(c, c.Spec.Hosts[0], "infra0=https://10.0.0.6:2380", StateNew).Spec.Containers[0].Command
	want := []string{
		"--initial-cluster=infra0=https://10.0.0.6:2380",
		"--initial-cluster-state=new",
		"--quota-backend-bytes=8589934592",
		"--name=infra0",
		"--listen-peer-urls=https://10.0.0.6:2380",
		"--listen-client-urls=https://10.0.0.6:2379",
		"--advertise-client-urls=https://10.0.0.6:2379",
		"--initial-advertise-peer-urls=https://10.0.0.6:2380",
	}
	if diff := cmp.Diff(want, cmd[len(cmd)-len(want):]); diff != "" {
		t.Errorf("the command's tail (-want +got):\n%s", diff)
	}
	if n := len(cmd); n != 1+13+len(want) {
		t.Errorf("%d words, want kubeadm's 13 defaults left after the overrides: %v", n, cmd)
	}
}
