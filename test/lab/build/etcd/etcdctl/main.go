// Command etcdctl is the upstream etcdctl, put in the lab's etcd image so
// tests can inspect members from inside the container like an operator would.
package main

import "go.etcd.io/etcd/etcdctl/v3/ctlv3"

func main() {
	ctlv3.MustStart()
}
