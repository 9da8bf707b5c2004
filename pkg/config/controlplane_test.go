package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Control-plane hosts are reached like etcd hosts, after them, and are
// told apart from them by name.
func TestControlPlaneHosts(t *testing.T) {
	c, warnings, err := Load("testdata/valid/control-plane.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings: %v", warnings)
	}
	if diff := cmp.Diff([]string{"infra0", "infra1", "infra2", "cp0", "cp1"}, c.AllHostNames()); diff != "" {
		t.Errorf("AllHostNames (-want +got):\n%s", diff)
	}
	all := c.AllHosts()
	want := Host{Name: "cp1", Address: "fd00::21", SSH: HostSSH{Host: "cp1.mgmt.example.com", Port: 2222, User: "ops", ProxyJump: "bastion"}}
	if diff := cmp.Diff(want, all[4]); diff != "" {
		t.Errorf("cp1 as a host (-want +got):\n%s", diff)
	}
	if !c.IsControlPlaneHost("cp0") || c.IsControlPlaneHost("infra0") || c.IsControlPlaneHost("nope") {
		t.Error("IsControlPlaneHost tells the hosts apart wrongly")
	}
	if _, ok := c.Host("cp0"); ok {
		t.Error("Host finds a control-plane host: it must name etcd hosts only")
	}
}
