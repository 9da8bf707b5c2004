package app

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/internal/testinv"
)

// Under the systemd runtime the hosts need no image: images list prints
// none (an empty JSON list), and names the release tarball they do need.
func TestImagesListUnderSystemd(t *testing.T) {
	dir := t.TempDir()
	testinv.Release(t, dir)
	tarball := filepath.Join(dir, "etcd-v3.7.0-linux-amd64.tar.gz")
	b, err := os.ReadFile(tarball)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	inv := `apiVersion: etcdadm/v1alpha1
kind: Cluster
metadata: {name: c}
spec:
  etcd:
    runtime: systemd
    release: {file: etcd-v3.7.0-linux-amd64.tar.gz, sha256: ` + hex.EncodeToString(sum[:]) + `}
  hosts:
  - {name: infra0, address: 10.0.0.6}
`
	file := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(file, []byte(inv), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, output := range []string{"text", "json"} {
		var out, errOut bytes.Buffer
		cmd := NewRootCommand(Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
		cmd.SetArgs([]string{"images", "list", "-f", file, "-o", output})
		if err := cmd.Execute(); err != nil {
			t.Fatalf("%s: %v\n%s", output, err, errOut.String())
		}
		want := ""
		if output == "json" {
			want = "[]\n"
		}
		if out.String() != want {
			t.Errorf("%s: stdout %q, want %q", output, out.String(), want)
		}
		if !strings.Contains(errOut.String(), "need no image") || !strings.Contains(errOut.String(), tarball) {
			t.Errorf("%s: stderr %q, want the release tarball named", output, errOut.String())
		}
	}
}
