package gather

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/etcdadm-io/etcdadm/internal/testinv"
	"github.com/etcdadm-io/etcdadm/pkg/facts"
	"github.com/etcdadm-io/etcdadm/pkg/runtime/kubelet"
)

// A control-plane host is read with the reduced request: its planned files
// and directories, its CA file and kubeadm's control plane, nothing of a
// member.
func TestRequestOfAControlPlaneHost(t *testing.T) {
	c, _ := testinv.ControlPlane(t)
	cp, _ := c.ControlPlaneHost("cp0")
	req := Request(c, kubelet.Runtime{}, cp.Host())
	want := facts.Request{
		CAPath:          "/etc/kubernetes/pki/etcd/ca.crt",
		Files:           []string{"/etc/kubernetes/pki/etcd/ca.crt", "/etc/kubernetes/pki/apiserver-etcd-client.crt", "/etc/kubernetes/pki/apiserver-etcd-client.key", "/etc/kubernetes/etcd-external.yaml"},
		Dirs:            []string{"/etc/kubernetes", "/etc/kubernetes/pki", "/etc/kubernetes/pki/etcd"},
		NoMember:        true,
		ControlPlaneDir: "/etc/kubernetes/manifests",
	}
	if diff := cmp.Diff(want, req); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	if member := Request(c, kubelet.Runtime{}, c.Spec.Hosts[0]); member.NoMember || member.DataDir == "" {
		t.Errorf("a member's request %+v", member)
	} else if member.ControlPlaneDir != "" {
		t.Errorf("an external member's host is read for a control plane: %+v", member)
	}
}
