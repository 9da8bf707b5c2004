package pipeline

import (
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdservice"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
)

func TestRuntimeFor(t *testing.T) {
	sd := &config.Cluster{Spec: config.Spec{Etcd: config.Etcd{Runtime: config.RuntimeSystemd}}}
	if rt := RuntimeFor(sd); rt.Name() != config.RuntimeSystemd || rt.StartPath(sd) != etcdservice.EnvPath || rt.Unit() != "etcd" {
		t.Errorf("systemd runtime: %v %s %s", rt.Name(), rt.StartPath(sd), rt.Unit())
	}
	k := &config.Cluster{Spec: config.Spec{Kubelet: config.Kubelet{StaticPodPath: "/etc/kubernetes/manifests"}}}
	if rt := RuntimeFor(k); rt.Name() != config.RuntimeKubelet || rt.StartPath(k) != manifests.ManifestPath(k) || rt.Unit() != "" {
		t.Errorf("kubelet runtime: %v %s %s", rt.Name(), rt.StartPath(k), rt.Unit())
	}
}
