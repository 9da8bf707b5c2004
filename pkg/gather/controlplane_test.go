package gather

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/runtime/kubelet"
)

func controlPlaneCluster(t *testing.T) (*config.Cluster, *certs.PKI) {
	t.Helper()
	inv := `apiVersion: etcdadm/v1alpha1
kind: Cluster
metadata: {name: test}
spec:
  pki: {keyAlgorithm: ECDSA-P256}
  hosts:
  - {name: m0, address: 192.0.2.10}
  controlPlane:
    hosts:
    - {name: cp0, address: 192.0.2.50}
    - {name: cp1, address: 192.0.2.51}
`
	c, _, err := config.Parse([]byte(inv), "test", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pki, _, err := certs.Compute(c, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c, pki
}

// A control-plane host is read with the reduced request: its planned files
// and directories and its CA file, nothing of a member.
func TestRequestOfAControlPlaneHost(t *testing.T) {
	c, _ := controlPlaneCluster(t)
	cp, _ := c.ControlPlaneHost("cp0")
	req := Request(c, kubelet.Runtime{}, cp.Host())
	want := facts.Request{
		CAPath:   "/etc/kubernetes/pki/etcd/ca.crt",
		Files:    []string{"/etc/kubernetes/pki/etcd/ca.crt", "/etc/kubernetes/pki/apiserver-etcd-client.crt", "/etc/kubernetes/pki/apiserver-etcd-client.key", "/etc/kubernetes/etcd-external.yaml"},
		Dirs:     []string{"/etc/kubernetes", "/etc/kubernetes/pki", "/etc/kubernetes/pki/etcd"},
		NoMember: true,
	}
	if diff := cmp.Diff(want, req); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	if member := Request(c, kubelet.Runtime{}, c.Spec.Hosts[0]); member.NoMember || member.DataDir == "" {
		t.Errorf("a member's request %+v", member)
	}
}
