package lab

import (
	"fmt"
	"strings"
)

// InventoryOptions choose how an etcdadm inventory reaches the lab.
type InventoryOptions struct {
	// Name is the cluster's name; "lab" when empty.
	Name string
	// User logs in; root when empty.
	User string
	// KnownHostsFile defaults to the lab's.
	KnownHostsFile string
	// ProxyJump goes into spec.ssh.proxyJump.
	ProxyJump string
	// Hosts defaults to every etcd host of the lab.
	Hosts []*Host
}

// Inventory is an etcdadm inventory for the lab's hosts. The lab's kernel
// is cgroup v1 without systemd, which the kubelet settings say.
func (l *Lab) Inventory(o InventoryOptions) string {
	if o.Name == "" {
		o.Name = "lab"
	}
	if o.User == "" {
		o.User = "root"
	}
	if o.KnownHostsFile == "" {
		o.KnownHostsFile = l.KnownHostsFile
	}
	if o.Hosts == nil {
		o.Hosts = l.Hosts
	}
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: etcdadm/v1alpha1
kind: Cluster
metadata: {name: %s}
spec:
  pki: {dir: pki, keyAlgorithm: ECDSA-P256}
  kubelet:
    cgroupDriver: cgroupfs
    extraConfig: {failCgroupV1: false}
  ssh: {user: %s, identityFile: %s, knownHostsFile: %s, proxyJump: %q}
  hosts:
`, o.Name, o.User, l.KeyFile, o.KnownHostsFile, o.ProxyJump)
	for _, h := range o.Hosts {
		fmt.Fprintf(&b, "  - {name: %s, address: %s}\n", h.Name, h.Address)
	}
	return b.String()
}
