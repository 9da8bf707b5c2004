package adopt

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/kubeadmguide"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/etcdservice"
	"github.com/etcdadm-io/etcdadm/pkg/kubelet"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/release"
)

// systemdInventory is an inventory of the systemd runtime with a release
// tarball of small scripts.
func systemdInventory(t *testing.T, runtime string) *config.Cluster {
	t.Helper()
	dir := t.TempDir()
	top := "etcd-v3.7.0-linux-amd64"
	files := map[string]string{}
	for _, n := range []string{"etcd", "etcdctl", "etcdutl"} {
		p := filepath.Join(dir, top+"."+n)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		files[n] = p
	}
	f, err := os.Create(filepath.Join(dir, top+".tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if err := release.Write(f, top, []string{"etcd", "etcdctl", "etcdutl"}, files); err != nil {
		t.Fatal(err)
	}
	f.Close()
	info, err := release.Read(filepath.Join(dir, top+".tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	etcd := ""
	if runtime == "systemd" {
		etcd = fmt.Sprintf("  etcd: {runtime: systemd, release: {file: %s.tar.gz, sha256: %s}}\n", top, info.SHA256)
	}
	doc := "apiVersion: etcdadm/v1alpha1\nkind: Cluster\nmetadata: {name: sd}\nspec:\n  kubernetesVersion: v1.37.2\n" + etcd + "  hosts:\n"
	for _, n := range nodes {
		doc += "  - {name: " + n.Name + ", address: " + n.Address + "}\n"
	}
	c, _, err := config.Parse([]byte(doc), "cluster.yaml", dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// etcdadm's own systemd runtime is adopted when the inventory says so:
// the environment files render byte for byte.
func TestSystemdRuntimeIsAdopted(t *testing.T) {
	c := systemdInventory(t, "systemd")
	built, err := kubeadmguide.Build(t.TempDir(), nodes, guideOptions)
	if err != nil {
		t.Fatal(err)
	}
	hosts := toHosts(built, nodes)
	for i, h := range c.Spec.Hosts {
		delete(hosts[i].Files, kubeadmguide.Manifest)
		delete(hosts[i].Files, kubelet.ConfigPath)
		delete(hosts[i].Files, kubelet.DropInPath)
		env, err := etcdservice.EnvFile(h.Name, manifests.Flags(c, h, manifests.InitialCluster(c.Spec.Hosts), manifests.StateNew))
		if err != nil {
			t.Fatal(err)
		}
		hosts[i].Files[etcdservice.EnvPath] = env
		hosts[i].Files[etcdservice.UnitPath] = etcdservice.UnitFile()
	}
	res, err := Analyze(c, hosts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res.Layout != LayoutSystemd || res.Inventory.Spec.Etcd.Runtime != config.RuntimeSystemd || res.Inventory.Spec.Etcd.Release.SHA256 == "" {
		t.Errorf("layout %q, etcd %+v", res.Layout, res.Inventory.Spec.Etcd)
	}
	if d, _ := Differences(c, res, hosts); d != "" {
		t.Errorf("differences:\n%s", d)
	}
	_, err = Analyze(systemdInventory(t, ""), hosts, time.Now())
	refused(t, err, "etcd runs under systemd (/etc/systemd/system/etcd.service): write spec.etcd.runtime: systemd and spec.etcd.release")
}
