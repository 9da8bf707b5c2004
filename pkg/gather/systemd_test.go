package gather

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/internal/testinv"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/runtime/systemd"
)

// The facts of a host of the systemd runtime: its environment file as the
// manifest, its unit's state, the binaries among its files.
func TestRequestSystemd(t *testing.T) {
	dir := t.TempDir()
	info, _ := testinv.Release(t, dir)
	inv := fmt.Sprintf("apiVersion: etcdadm/v1alpha1\nkind: Cluster\nmetadata: {name: t}\nspec:\n  etcd:\n    runtime: systemd\n    release: {file: %s, sha256: %s}\n  pki: {keyAlgorithm: ECDSA-P256}\n  hosts:\n  - {name: n0, address: 192.0.2.10}\n",
		filepath.Base(info.Path), info.SHA256)
	c, _, err := config.Parse([]byte(inv), "inventory", dir)
	if err != nil {
		t.Fatal(err)
	}
	req := Request(c, systemd.Runtime{}, c.Spec.Hosts[0])
	if req.ManifestPath != "/etc/etcd/etcd.env" || req.EtcdUnit != "etcd" {
		t.Errorf("request %+v", req)
	}
	for _, want := range []string{"/usr/local/bin/etcd", "/usr/local/bin/etcdctl", "/etc/systemd/system/etcd.service", "/etc/etcd/etcd.env"} {
		if !slices.Contains(req.Files, want) {
			t.Errorf("the request does not read %s: %v", want, req.Files)
		}
	}
	if slices.ContainsFunc(req.Files, func(p string) bool { return strings.Contains(p, "kubelet") || strings.HasSuffix(p, "etcd.yaml") }) {
		t.Errorf("the request reads a kubelet file or a manifest: %v", req.Files)
	}
}
