package pipeline

import (
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/runtime"
	"github.com/etcdadm-io/etcdadm/pkg/runtime/kubelet"
	"github.com/etcdadm-io/etcdadm/pkg/runtime/systemd"
)

// RuntimeFor is the runtime the inventory runs its members with
// (spec.etcd.runtime). A run chooses it once and hands it to the facts'
// gathering, the plan and the executor.
func RuntimeFor(c *config.Cluster) runtime.Runtime {
	if c.Systemd() {
		return systemd.Runtime{}
	}
	return kubelet.Runtime{}
}
