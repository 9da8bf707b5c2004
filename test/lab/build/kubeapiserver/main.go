// Command kube-apiserver is the upstream kube-apiserver, built from the
// k8s.io/kubernetes module like the lab's kubelet, so that the lab's
// control-plane hosts run the API server kubeadm's static Pod starts.
package main

import (
	"os"
	_ "time/tzdata"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
