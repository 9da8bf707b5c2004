// Package testinv makes what several packages' tests start from: small
// inventories, parsed as the inventory loader does, and etcd release
// tarballs. Only tests import it.
package testinv

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/release"
)

// ControlPlane is an external cluster of one member, m0, and two
// control-plane hosts, cp0 and cp1, with its PKI worked out in memory.
func ControlPlane(t *testing.T) (*config.Cluster, *certs.PKI) {
	t.Helper()
	c := Parse(t, `apiVersion: etcdadm/v1alpha1
kind: Cluster
metadata: {name: test}
spec:
  pki: {keyAlgorithm: ECDSA-P256}
  hosts:
  - {name: m0, address: 192.0.2.10}
  controlPlane:
    hosts:
    - {name: cp0, address: 192.0.2.50}
    - {name: cp1, address: 192.0.2.51}
`, t.TempDir())
	pki, _, err := certs.Compute(c, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c, pki
}

// Parse loads an inventory whose relative paths resolve in dir.
func Parse(t testing.TB, inventory, dir string) *config.Cluster {
	t.Helper()
	c, _, err := config.Parse([]byte(inventory), "inventory", dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Release writes, in dir, an etcd v3.7.0 release tarball for linux/amd64
// whose etcd is big enough to take many reads, and returns its Info and
// that etcd.
func Release(t *testing.T, dir string) (*release.Info, []byte) {
	t.Helper()
	etcd := bytes.Repeat([]byte("etcd binary "), 300000)
	files := map[string]string{"etcd": filepath.Join(dir, "etcd.src"), "etcdctl": filepath.Join(dir, "etcdctl.src")}
	if err := os.WriteFile(files["etcd"], etcd, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files["etcdctl"], []byte("etcdctl"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "etcd-v3.7.0-linux-amd64.tar.gz")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := release.Write(f, "etcd-v3.7.0-linux-amd64", []string{"etcd", "etcdctl"}, files); err != nil {
		t.Fatal(err)
	}
	f.Close()
	info, err := release.Read(p)
	if err != nil {
		t.Fatal(err)
	}
	return info, etcd
}
