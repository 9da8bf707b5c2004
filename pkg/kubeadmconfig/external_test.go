package kubeadmconfig

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/etcdadm-io/etcdadm/pkg/config"
)

func TestExternalNamesEveryMemberAndEtcdadmsFiles(t *testing.T) {
	inv := `apiVersion: etcdadm/v1alpha1
kind: Cluster
metadata: {name: prod}
spec:
  kubernetesVersion: v1.36.4
  hosts:
  - {name: infra0, address: 10.0.0.6}
  - {name: infra1, address: "fd00::7"}
  - {name: infra2, address: 10.0.0.8}
  controlPlane:
    hosts:
    - {name: cp0, address: 10.0.0.20}
`
	c, _, err := config.Parse([]byte(inv), "test", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	got, err := MarshalExternal(c)
	if err != nil {
		t.Fatal(err)
	}
	want := `apiVersion: kubeadm.k8s.io/v1beta4
etcd:
  external:
    caFile: /etc/kubernetes/pki/etcd/ca.crt
    certFile: /etc/kubernetes/pki/apiserver-etcd-client.crt
    endpoints:
    - https://10.0.0.6:2379
    - https://[fd00::7]:2379
    - https://10.0.0.8:2379
    keyFile: /etc/kubernetes/pki/apiserver-etcd-client.key
kind: ClusterConfiguration
kubernetesVersion: v1.36.4
`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("etcd-external.yaml (-want +got):\n%s", diff)
	}
}
