package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const boundsBase = `apiVersion: etcdadm/v1alpha1
kind: Cluster
metadata: {name: prod}
spec:
`

// A host path that climbs out of itself would also climb out of render's -o
// directory (DIR/<host>/<path>); it is refused before anything is planned.
func TestHostPathsMustBeClean(t *testing.T) {
	for _, tc := range []struct{ spec, field, want string }{
		{"etcd: {dataDir: /var/lib/../../tmp/x}", "spec.etcd.dataDir", `has a ".." element`},
		{"etcd: {dataDir: /var/lib/etcd/}", "spec.etcd.dataDir", "write it /var/lib/etcd"},
		{"etcd: {dataDir: /var//lib/etcd}", "spec.etcd.dataDir", "write it /var/lib/etcd"},
		{"etcd: {dataDir: /var/./lib/etcd}", "spec.etcd.dataDir", "write it /var/lib/etcd"},
		{"etcd: {dataDir: /}", "spec.etcd.dataDir", "must not be /"},
		{"kubelet: {staticPodPath: /etc/kubernetes/../../manifests}", "spec.kubelet.staticPodPath", `has a ".." element`},
		{"kubelet: {staticPodPath: /etc/kubernetes/manifests/}", "spec.kubelet.staticPodPath", "write it /etc/kubernetes/manifests"},
		{"kubelet: {containerRuntimeEndpoint: 'unix:///run/../containerd.sock'}", "spec.kubelet.containerRuntimeEndpoint", "is not a clean socket path"},
		{"pki: {dir: ../../pki}", "spec.pki.dir", `has a ".." element`},
		{"pki: {dir: pki/}", "spec.pki.dir", "write it pki"},
		{"pki: {dir: ./pki}", "spec.pki.dir", "write it pki"},
		{"ssh: {knownHostsFile: '~/.ssh/../known_hosts'}", "spec.ssh.knownHostsFile", `has a ".." element`},
		{"ssh: {identityFile: '/root//.ssh/id'}", "spec.ssh.identityFile", "write it /root/.ssh/id"},
	} {
		data := boundsBase + "  " + tc.spec + "\n  hosts:\n  - {name: infra0, address: 10.0.0.6}\n"
		_, _, err := Parse([]byte(data), "cluster.yaml", "/inventory")
		if err == nil {
			t.Errorf("%s: accepted", tc.spec)
			continue
		}
		if !strings.Contains(err.Error(), tc.field+" (line 5): ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not name %s with %q", tc.spec, err, tc.field, tc.want)
		}
	}
}

func TestCleanPathsAccepted(t *testing.T) {
	data := boundsBase + `  etcd: {dataDir: /data/etcd}
  pki: {dir: ~/clusters/prod/pki}
  kubelet: {staticPodPath: /etc/kubernetes/manifests}
  ssh: {knownHostsFile: ~/.ssh/known_hosts}
  hosts:
  - {name: infra0, address: 10.0.0.6}
`
	if _, _, err := Parse([]byte(data), "cluster.yaml", "/inventory"); err != nil {
		t.Fatal(err)
	}
}

// aliasBomb is an inventory of about 10 KB whose hosts alias one host, whose
// SAN list aliases one list, and whose kubelet extraConfig nests aliases nine
// levels deep: expanded, it is a billion strings.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString(boundsBase)
	b.WriteString("  etcd:\n    serverCertSANs: &sans [")
	for i := range 10 {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "san%d.example.com", i)
	}
	b.WriteString("]\n  kubelet:\n    extraConfig:\n      l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i < 9; i++ {
		fmt.Fprintf(&b, "      l%d: &l%d [", i, i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*l%d", i-1)
		}
		b.WriteString("]\n")
	}
	b.WriteString("  hosts:\n  - &host {name: infra0, address: 10.0.0.6, serverCertSANs: *sans, peerCertSANs: *sans}\n")
	for b.Len() < 10<<10 {
		b.WriteString("  - *host\n")
	}
	return b.String()
}

func TestAliasBombRefusedQuickly(t *testing.T) {
	bomb := aliasBomb()
	if len(bomb) < 10<<10 || len(bomb) > 11<<10 {
		t.Fatalf("the bomb is %d bytes, want about 10 KB", len(bomb))
	}
	start := time.Now()
	_, _, err := Parse([]byte(bomb), "bomb.yaml", "/inventory")
	elapsed := time.Since(start)
	if elapsed > time.Second {
		t.Errorf("took %s to refuse, want under 1s", elapsed)
	}
	n := strings.Count(bomb, "&") + strings.Count(bomb, "*")
	want := fmt.Sprintf("bomb.yaml is invalid: line 6: YAML anchor &sans: anchors and aliases are not supported (%d in the file); write each value out in full", n)
	if err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant    %s", err, want)
	}
}

func TestOneAliasRefused(t *testing.T) {
	data := boundsBase + `  hosts:
  - {name: infra0, address: 10.0.0.6, serverCertSANs: &x [etcd.example.com]}
  - {name: infra1, address: 10.0.0.7, serverCertSANs: *x}
`
	_, _, err := Parse([]byte(data), "cluster.yaml", "/inventory")
	want := "cluster.yaml is invalid: line 6: YAML anchor &x: anchors and aliases are not supported (2 in the file); write each value out in full"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant    %s", err, want)
	}
}

func TestLargeInventoryRefused(t *testing.T) {
	valid := boundsBase + "  hosts:\n  - {name: infra0, address: 10.0.0.6}\n"
	path := filepath.Join(t.TempDir(), "cluster.yaml")
	padding := strings.Repeat("# "+strings.Repeat("x", 78)+"\n", (MaxInventorySize-len(valid))/80+1)
	if err := os.WriteFile(path, []byte(valid+padding), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), "is larger than 1 MiB") {
		t.Errorf("error = %v, want one saying the file is larger than 1 MiB", err)
	}
	// Exactly 1 MiB is still read.
	exact := valid + padding[:MaxInventorySize-len(valid)-1] + "\n"
	if err := os.WriteFile(path, []byte(exact), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(path); err != nil {
		t.Errorf("a 1 MiB inventory: %v", err)
	}
}

// Load reads no more than the limit: an endless file is refused, not read.
func TestEndlessInventoryRefused(t *testing.T) {
	done := make(chan error, 1)
	go func() {
		_, _, err := Load("/dev/zero")
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "is larger than 1 MiB") {
			t.Errorf("error = %v, want one saying the file is larger than 1 MiB", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Load of /dev/zero did not return")
	}
}
