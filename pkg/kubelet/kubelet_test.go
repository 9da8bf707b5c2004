package kubelet

import (
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/config"
)

func TestConfigFileMergesExtraConfigAndOmitsUnsetFields(t *testing.T) {
	c, _, err := config.Parse([]byte(`apiVersion: etcdadm/v1alpha1
kind: Cluster
metadata: {name: k}
spec:
  kubelet:
    cgroupDriver: cgroupfs
    extraConfig: {failCgroupV1: false, authentication: {x509: {clientCAFile: /etc/ca.crt}}}
  hosts:
  - {name: a, address: 10.0.0.1}
`), "k", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ConfigFile(c)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{"failCgroupV1: false", "cgroupDriver: cgroupfs", "clientCAFile: /etc/ca.crt", "  anonymous:\n    enabled: false", "mode: AlwaysAllow"} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %q in:\n%s", want, s)
		}
	}
	// Unset durations would read as deliberate zero settings.
	if strings.Contains(s, "0s") || strings.Contains(s, "{}") {
		t.Errorf("unset fields printed:\n%s", s)
	}
}

func TestDropInResetsExecStart(t *testing.T) {
	b, err := DropIn()
	if err != nil {
		t.Fatal(err)
	}
	want := "[Service]\nExecStart=\nExecStart=/usr/bin/kubelet --config=/etc/systemd/system/kubelet.service.d/kubelet.conf\nRestart=always\n"
	if !strings.HasSuffix(string(b), want) {
		t.Errorf("drop-in:\n%s", b)
	}
}
