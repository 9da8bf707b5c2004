// Command etcdadm brings up and runs the etcd clusters behind Kubernetes
// control planes, from one inventory file.
package main

import (
	"os"

	"github.com/etcdadm-io/etcdadm/cmd/etcdadm/app"
)

func main() {
	os.Exit(app.Main())
}
