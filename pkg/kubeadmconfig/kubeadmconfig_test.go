package kubeadmconfig

import (
	"slices"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/config"
)

func stackedCluster(t *testing.T) *config.Cluster {
	t.Helper()
	c, _, err := config.Parse([]byte(`apiVersion: etcdadm/v1alpha1
kind: Cluster
metadata: {name: unit}
spec:
  topology: stacked
  etcd:
    dataDir: /data/etcd
    serverCertSANs: [etcd.example.com]
  hosts:
  - {name: cp0, address: "fd00::10", serverCertSANs: [cp0.example.com]}
  - {name: cp1, address: "fd00::11"}
`), "unit", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestForKubeadmInitOnTheFirstHostJoinOnTheOthers(t *testing.T) {
	c := stackedCluster(t)
	for i, h := range c.Spec.Hosts {
		f, err := ForKubeadm(c, h, "cp0=https://[fd00::10]:2380", "new")
		if err != nil {
			t.Fatal(err)
		}
		wantPath, wantMode, wantKinds := InitPath, InitMode, []string{"kind: InitConfiguration", "kind: ClusterConfiguration"}
		if i > 0 {
			wantPath, wantMode, wantKinds = JoinPath, JoinMode, []string{"kind: JoinConfiguration"}
		}
		if f.Path != wantPath || f.Mode != wantMode {
			t.Errorf("%s: %s %04o, want %s %04o", h.Name, f.Path, f.Mode, wantPath, wantMode)
		}
		for _, k := range wantKinds {
			if !strings.Contains(string(f.Data), k) {
				t.Errorf("%s: no %q in\n%s", h.Name, k, f.Data)
			}
		}
		if strings.Count(string(f.Data), "\nkind: ") != len(wantKinds) {
			t.Errorf("%s: documents other than %v in\n%s", h.Name, wantKinds, f.Data)
		}
	}
}

func TestTheClusterConfigurationCarriesOnlyTheClusterSANs(t *testing.T) {
	c := stackedCluster(t)
	guide := Build(c, c.Spec.Hosts[0], "", "new")
	init := BuildInit(c, c.Spec.Hosts[0], "", "new")
	if !slices.Contains(guide.Cluster.Etcd.Local.ServerCertSANs, "cp0.example.com") {
		t.Fatalf("kubeadmcfg.yaml lost the host's SAN: %v", guide.Cluster.Etcd.Local.ServerCertSANs)
	}
	if got := init.Cluster.Etcd.Local.ServerCertSANs; !slices.Equal(got, []string{"etcd.example.com"}) {
		t.Errorf("kubeadm-init.yaml serverCertSANs %v, want the cluster's [etcd.example.com]", got)
	}
	if init.Cluster.ControlPlaneEndpoint != "[fd00::10]:6443" || BuildJoin(c, c.Spec.Hosts[1]).Discovery.BootstrapToken.APIServerEndpoint != "[fd00::10]:6443" {
		t.Errorf("the API server endpoint is not the first host's: %q", init.Cluster.ControlPlaneEndpoint)
	}
}

func TestIgnorePreflightErrorsFollowTheDataDirectory(t *testing.T) {
	got := IgnorePreflightErrors(stackedCluster(t))
	want := []string{"Port-2379", "Port-2380", "DirAvailable--data-etcd", "FileAvailable--etc-kubernetes-manifests-etcd.yaml"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
