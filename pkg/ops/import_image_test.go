package ops_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/internal/opstest"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/images"
	"github.com/etcdadm-io/etcdadm/pkg/ops"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

const (
	importedRef    = "registry.k8s.io/etcd:3.7.0-0"
	importedDigest = "sha256:4cb60bd1887aa85934c1203d57ac3982fd5c122c2d0f3599d25a928b974fdf74"
)

// fakeCtr puts a ctr stand-in first on PATH: `images import` keeps what it
// reads (the file named, or stdin for "-") and its arguments in dir, and
// `images ls` lists the image with digest.
func fakeCtr(t *testing.T, digest string) string {
	t.Helper()
	dir := t.TempDir()
	script := `#!/bin/sh
d=` + dir + `
case "$*" in
*"images import"*) echo "$*" > "$d/args"; for a; do last=$a; done
  if [ "$last" = - ]; then cat > "$d/imported"; else cp "$last" "$d/imported"; fi
  echo "unpacking ` + importedRef + ` (` + digest + `)...done";;
*"images ls -q"*) cat "$d/present" 2>/dev/null || true;;
*"images rm"*) for a; do last=$a; done; echo "$last" >> "$d/removed";;
*"images ls"*) echo "REF TYPE DIGEST SIZE PLATFORMS LABELS"; echo "` + importedRef + ` application/vnd.oci.image.manifest.v1+json ` + digest + ` 30.1 MiB linux/amd64 -";;
*) echo "unexpected $*" >&2; exit 2;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "ctr"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	return dir
}

// localEnv runs operations on this machine, under root (a directory).
func localEnv(root string) *opstest.Env {
	c := &config.Cluster{Spec: config.Spec{
		Kubelet: config.Kubelet{ContainerRuntimeEndpoint: "unix:///run/containerd/containerd.sock"},
		Hosts:   []config.Host{{Name: "local", Address: "127.0.0.1"}},
	}}
	return &opstest.Env{C: c, H: c.Spec.Hosts[0], T: remote.NewLocal("local", false), State: filepath.Join(root, "state"), Backups: filepath.Join(root, "backup"), Stamp: "20300101T000000Z"}
}

func importOp(archive string, a *images.Archive) ops.ImportImage {
	return ops.ImportImage{Source: archive, Archive: a, Snapshotter: "native",
		Images: []ops.ImageImport{{Ref: importedRef, Digest: importedDigest}}}
}

// An import streams the archive to the host, imports it with ctr into the
// kubelet's namespace for the CRI plugin's snapshotter (through gzip -d
// for a gzip'd archive), removes the pushed file and checks the digest.
func TestImportImage(t *testing.T) {
	archive := bytes.Repeat([]byte("image archive bytes "), 50000)
	for _, gz := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "gzip"}[gz], func(t *testing.T) {
			root := t.TempDir()
			fake := fakeCtr(t, importedDigest)
			data := archive
			if gz {
				var b bytes.Buffer
				zw := gzip.NewWriter(&b)
				if _, err := zw.Write(archive); err != nil {
					t.Fatal(err)
				}
				if err := zw.Close(); err != nil {
					t.Fatal(err)
				}
				data = b.Bytes()
			}
			src := filepath.Join(root, "etcd image.tar")
			if err := os.WriteFile(src, data, 0o644); err != nil {
				t.Fatal(err)
			}
			// A file a cut run left behind goes.
			stale := filepath.Join(root, "state", "import", "etcd.tar.1234")
			if err := os.MkdirAll(filepath.Dir(stale), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(stale, []byte("partial"), 0o600); err != nil {
				t.Fatal(err)
			}
			e := localEnv(root)
			if err := ops.Execute(context.Background(), e, importOp(src, &images.Archive{Path: src, Size: int64(len(data)), Gzip: gz})); err != nil {
				t.Fatal(err)
			}
			if done := e.Done(); len(done) != 1 || strings.Join(done[0].Imported, ",") != importedRef {
				t.Errorf("reported %+v, want %s imported", done, importedRef)
			}
			got, err := os.ReadFile(filepath.Join(fake, "imported"))
			if err != nil || !bytes.Equal(got, archive) {
				t.Errorf("ctr imported %d bytes (%v), want the %d of the archive", len(got), err, len(archive))
			}
			args, _ := os.ReadFile(filepath.Join(fake, "args"))
			want := "-a /run/containerd/containerd.sock --connect-timeout 2s -n k8s.io images import --snapshotter native "
			if !strings.HasPrefix(string(args), want) || strings.Contains(string(args), "--all-platforms") {
				t.Errorf("ctr %s, want %s…", args, want)
			}
			left, _ := os.ReadDir(filepath.Join(root, "state", "import"))
			st, err := os.Stat(filepath.Join(root, "state", "import"))
			if len(left) != 0 || err != nil || st.Mode().Perm() != 0o700 {
				t.Errorf("the import directory holds %v (mode %v, %v), want it empty and 0700", left, st.Mode(), err)
			}
		})
	}
}

// containerd holding another digest after the import fails the run,
// naming both digests; a changed archive is not pushed.
func TestImportImageChecksTheDigest(t *testing.T) {
	root := t.TempDir()
	fakeCtr(t, "sha256:"+strings.Repeat("9", 64))
	src := filepath.Join(root, "etcd.tar")
	if err := os.WriteFile(src, []byte("archive"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := ops.Execute(context.Background(), localEnv(root), importOp(src, &images.Archive{Path: src, Size: 7}))
	if err == nil || !strings.Contains(err.Error(), "containerd holds "+importedRef+" as sha256:9999") || !strings.Contains(err.Error(), importedDigest) {
		t.Errorf("err = %v, want the two digests", err)
	}
	err = ops.Execute(context.Background(), localEnv(root), importOp(src, &images.Archive{Path: src, Size: 8}))
	if err == nil || !strings.Contains(err.Error(), "changed since it was read") {
		t.Errorf("err = %v, want the archive's change", err)
	}
}

// An archive of several images: those the operation does not need are
// removed again after the import, but one the host held before.
func TestImportImageKeepsOnlyWhatItNeeds(t *testing.T) {
	root := t.TempDir()
	fake := fakeCtr(t, importedDigest)
	if err := os.WriteFile(filepath.Join(fake, "present"), []byte("registry.example/held:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(root, "bundle.tar")
	if err := os.WriteFile(src, []byte("archive"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &images.Archive{Path: src, Size: 7, Images: []images.Image{
		{Ref: importedRef, Digest: importedDigest},
		{Ref: "registry.k8s.io/pause:3.10.2", Digest: "sha256:" + strings.Repeat("1", 64)},
		{Ref: "registry.example/held:1", Digest: "sha256:" + strings.Repeat("2", 64)},
		{Ref: "registry.example/tool:2", Digest: "sha256:" + strings.Repeat("3", 64)},
	}}
	if err := ops.Execute(context.Background(), localEnv(root), importOp(src, a)); err != nil {
		t.Fatal(err)
	}
	removed, _ := os.ReadFile(filepath.Join(fake, "removed"))
	if got := strings.Fields(string(removed)); strings.Join(got, " ") != "registry.k8s.io/pause:3.10.2 registry.example/tool:2" {
		t.Errorf("removed %v, want the archive's two others the host did not hold", got)
	}
}
