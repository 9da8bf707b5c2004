package render

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/release"
)

// A release's binary is rendered from the tarball, streamed: in the tree,
// in the archive and in the index, with its size and sha256.
func TestRenderStreamsReleaseBinaries(t *testing.T) {
	src := t.TempDir()
	etcd := bytes.Repeat([]byte("etcd "), 200000)
	bin := filepath.Join(src, "etcd")
	if err := os.WriteFile(bin, etcd, 0o755); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(src, "etcd-v3.7.0-linux-amd64.tar.gz")
	f, err := os.Create(tarball)
	if err != nil {
		t.Fatal(err)
	}
	if err := release.Write(f, "etcd-v3.7.0-linux-amd64", []string{"etcd", "etcdctl"}, map[string]string{"etcd": bin, "etcdctl": bin}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	info, err := release.Read(tarball)
	if err != nil {
		t.Fatal(err)
	}
	b := info.Binaries["etcd"]
	file := plan.File{Path: "/usr/local/bin/etcd", Mode: 0o755, Part: plan.PartManifests, Source: &plan.Source{Archive: tarball, Entry: b.Entry, Size: b.Size, SHA256: b.SHA256}}
	p := &plan.Plan{Hosts: []plan.Host{{Name: "n0", Dirs: []plan.Dir{{Path: "/usr/local/bin", Mode: 0o755}}, Files: []plan.File{file,
		{Path: "/etc/etcd/etcd.env", Mode: 0o644, Part: plan.PartManifests, Data: []byte("ETCDADM_ARGS=\"--name=n0\"\n")}}}}}
	out := t.TempDir()
	if err := Write(p, out); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(out, "n0", "usr", "local", "bin", "etcd"))
	if err != nil || !bytes.Equal(got, etcd) {
		t.Fatalf("tree: %d bytes (%v), want %d", len(got), err, len(etcd))
	}
	if st, _ := os.Stat(filepath.Join(out, "n0", "usr", "local", "bin", "etcd")); st.Mode().Perm() != 0o755 {
		t.Errorf("tree mode %v", st.Mode())
	}
	var idx Index
	raw, _ := os.ReadFile(filepath.Join(out, "n0", IndexFile))
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	if e := idx.Files[0]; e.Size != len(etcd) || e.SHA256 != b.SHA256 {
		t.Errorf("index entry %+v", e)
	}
	sums, _ := os.ReadFile(filepath.Join(out, "n0", SumsFile))
	if !strings.Contains(string(sums), b.SHA256+"  usr/local/bin/etcd\n") {
		t.Errorf("SHA256SUMS:\n%s", sums)
	}
	found := false
	for _, e := range readArchive(t, filepath.Join(out, ArchiveName("n0"))) {
		if e.hdr.Name == "usr/local/bin/etcd" {
			found = true
			if !bytes.Equal(e.data, etcd) || e.hdr.Mode != 0o755 {
				t.Errorf("archive entry: %d bytes, mode %o", len(e.data), e.hdr.Mode)
			}
		}
	}
	if !found {
		t.Error("the archive has no usr/local/bin/etcd")
	}
	if left, _ := filepath.Glob(filepath.Join(out, ".*.tmp")); len(left) > 0 {
		t.Errorf("temporary files: %v", left)
	}

	// A tarball that changed since it was read is refused.
	file.Source.SHA256 = strings.Repeat("0", 64)
	p.Hosts[0].Files[0] = file
	if err := Write(p, t.TempDir()); err == nil || !strings.Contains(err.Error(), "changed since it was read") {
		t.Errorf("a changed tarball: %v", err)
	}
}
