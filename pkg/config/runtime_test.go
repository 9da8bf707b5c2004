package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/release"
)

// writeRelease writes a release tarball named after top into dir, holding
// names (small scripts), and returns its file name and sha256.
func writeRelease(t *testing.T, dir, top string, names ...string) (string, string) {
	t.Helper()
	files := map[string]string{}
	for _, n := range names {
		p := filepath.Join(dir, top+"-"+n)
		if err := os.WriteFile(p, []byte("#!/bin/sh\necho "+n+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		files[n] = p
	}
	name := top + ".tar.gz"
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := release.Write(f, top, names, files); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return name, hex.EncodeToString(sum[:])
}

func systemdInventory(file, sum string) string {
	return fmt.Sprintf(`apiVersion: etcdadm/v1alpha1
kind: Cluster
metadata: {name: prod}
spec:
  etcd:
    runtime: systemd
    release: {file: %s, sha256: %s}
  hosts:
  - {name: infra0, address: 10.0.0.6}
`, file, sum)
}

func TestSystemdRelease(t *testing.T) {
	dir := t.TempDir()
	file, sum := writeRelease(t, dir, "etcd-v3.7.0-linux-amd64", "etcd", "etcdctl", "etcdutl")
	c, _, err := Parse([]byte(systemdInventory(file, strings.ToUpper(sum))), "cluster.yaml", dir)
	if err != nil {
		t.Fatal(err)
	}
	info := c.Spec.Etcd.Release.Info
	if !c.Systemd() || info == nil || info.Version != "3.7.0" || info.Arch != "amd64" || info.SHA256 != sum || len(info.Binaries) != 3 {
		t.Fatalf("systemd %v, release %+v", c.Systemd(), info)
	}
	if info.Path != filepath.Join(dir, file) {
		t.Errorf("release path %s", info.Path)
	}

	// The default runtime is the kubelet, with no release read.
	k, _, err := Parse([]byte(strings.Replace(inventoryWithout(systemdInventory(file, sum), "    release:"), "runtime: systemd", "extraArgs: {log-level: debug}", 1)), "cluster.yaml", dir)
	if err != nil {
		t.Fatal(err)
	}
	if k.Spec.Etcd.Runtime != RuntimeKubelet || k.Systemd() || k.Spec.Etcd.Release.Info != nil {
		t.Errorf("default runtime %q, release %+v", k.Spec.Etcd.Runtime, k.Spec.Etcd.Release)
	}
}

func inventoryWithout(inv, prefix string) string {
	var out []string
	for _, l := range strings.Split(inv, "\n") {
		if !strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestSystemdReleaseRefused(t *testing.T) {
	dir := t.TempDir()
	good, sum := writeRelease(t, dir, "etcd-v3.7.0-linux-amd64", "etcd", "etcdctl")
	noEtcd, noEtcdSum := writeRelease(t, dir, "etcd-v3.7.1-linux-amd64", "etcdctl", "etcdutl")
	darwin, darwinSum := writeRelease(t, dir, "etcd-v3.7.0-darwin-arm64", "etcd", "etcdctl")
	flat, flatSum := writeRelease(t, dir, "binaries", "etcd", "etcdctl")
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	other := strings.Repeat("ab", 32)
	cases := map[string]struct{ file, sum, want string }{
		"wrong sha256": {good, other, fmt.Sprintf(
			"cluster.yaml is invalid: spec.etcd.release.sha256 (line 7): %s has sha256 %s, not %s: it is not the release the inventory names; download it again, or correct the sha256",
			filepath.Join(dir, good), sum, other)},
		"wrong sha256 of a tarball without etcd": {noEtcd, other, "spec.etcd.release.sha256 (line 7): " + filepath.Join(dir, noEtcd) + " has sha256 " + noEtcdSum},
		"no etcd": {noEtcd, noEtcdSum, fmt.Sprintf(
			"cluster.yaml is invalid: spec.etcd.release.file (line 7): %s is not an etcd release: it holds no etcd in a release directory (found etcd-v3.7.1-linux-amd64/etcdctl, etcd-v3.7.1-linux-amd64/etcdutl); use an etcd release tarball from github.com/etcd-io/etcd/releases (etcd-v3.7.0-linux-amd64.tar.gz)",
			filepath.Join(dir, noEtcd))},
		"not linux":         {darwin, darwinSum, "spec.etcd.release.file (line 7): " + filepath.Join(dir, darwin) + " is etcd 3.7.0 for darwin/arm64: the hosts run Linux; use etcd-v3.7.0-linux-<arch>.tar.gz"},
		"no version":        {flat, flatSum, "its binaries are in binaries, not in a directory named like etcd-v3.7.0-linux-amd64, which names the version"},
		"a directory":       {"adir", sum, "spec.etcd.release.file (line 7): " + filepath.Join(dir, "adir") + " is not a file; point it at the etcd release tarball"},
		"bad sha, no check": {good, "xyz", `cluster.yaml is invalid: spec.etcd.release.sha256 (line 7): "xyz" is not a sha256: write the 64 hexadecimal digits sha256sum prints`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, err := Parse([]byte(systemdInventory(tc.file, tc.sum)), "cluster.yaml", dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v\nwant %s", err, tc.want)
			}
			if err != nil && strings.Count(err.Error(), "spec.etcd.release") != 1 {
				t.Errorf("want one problem with the release, got %v", err)
			}
		})
	}
}
