// Command etcd is the upstream etcd server, built from the
// go.etcd.io/etcd/server/v3 module at the next patch release, for the lab's second etcd image (a rolling upgrade to it).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
