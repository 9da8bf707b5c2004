package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// file is one entry of a test archive; link makes it a symbolic link.
type file struct {
	name string
	data []byte
	link string
}

// writeArchive writes the files as a tar, gzip'd when asked, and returns
// its path.
func writeArchive(t *testing.T, dir, name string, files []file, gz bool) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: time.Unix(946684800, 0), Typeflag: tar.TypeReg}
		if f.link != "" {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeSymlink, f.link, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if f.link == "" {
			if _, err := tw.Write(f.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	if gz {
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		if _, err := zw.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		data = zb.Bytes()
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func blobFile(b []byte) file {
	return file{name: "blobs/sha256/" + strings.TrimPrefix(digestOf(b), "sha256:"), data: b}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// layerTar is a one-file layer, its content made from seed.
func layerTar(t *testing.T, seed string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	data := []byte("content of " + seed + "\n")
	if err := tw.WriteHeader(&tar.Header{Name: "usr/local/bin/" + seed, Mode: 0o755, Size: int64(len(data)), ModTime: time.Unix(946684800, 0), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// image is one platform's image: its blobs and manifest descriptor.
type image struct {
	layer, config, manifest []byte
	desc                    descriptor
}

func buildImage(t *testing.T, seed, arch string) image {
	t.Helper()
	layer := layerTar(t, seed)
	config := mustJSON(t, map[string]any{
		"architecture": arch, "os": "linux",
		"config": map[string]any{"Cmd": []string{"/usr/local/bin/" + seed}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{digestOf(layer)}},
	})
	manifest := mustJSON(t, map[string]any{
		"schemaVersion": 2, "mediaType": MediaTypeOCIManifest,
		"config": descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: digestOf(config), Size: int64(len(config))},
		"layers": []descriptor{{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: digestOf(layer), Size: int64(len(layer))}},
	})
	return image{layer: layer, config: config, manifest: manifest,
		desc: descriptor{MediaType: MediaTypeOCIManifest, Digest: digestOf(manifest), Size: int64(len(manifest)), Platform: &platform{OS: "linux", Architecture: arch}}}
}

func (im image) blobs() []file {
	return []file{blobFile(im.layer), blobFile(im.config), blobFile(im.manifest)}
}

func layoutFile() file {
	return file{name: "oci-layout", data: []byte(`{"imageLayoutVersion":"1.0.0"}`)}
}

func indexFile(t *testing.T, descs ...descriptor) file {
	t.Helper()
	return file{name: "index.json", data: mustJSON(t, map[string]any{"schemaVersion": 2, "mediaType": MediaTypeOCIIndex, "manifests": descs})}
}

func named(d descriptor, ref string) descriptor {
	d.Annotations = map[string]string{AnnotationContainerdName: ref, AnnotationRefName: ref[strings.LastIndex(ref, ":")+1:]}
	return d
}

// An OCI-archive as the lab writes it (and `ctr images export` of one
// platform): the manifest named by containerd's annotation, the tag alone
// in the OCI one.
func TestReadOCIArchive(t *testing.T) {
	for _, gz := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "gzip"}[gz], func(t *testing.T) {
			dir := t.TempDir()
			etcd := buildImage(t, "etcd", "amd64")
			files := append([]file{layoutFile(), indexFile(t, named(etcd.desc, "registry.k8s.io/etcd:3.7.0-0"))}, etcd.blobs()...)
			p := writeArchive(t, dir, "etcd.tar", files, gz)
			a, err := Read(p)
			if err != nil {
				t.Fatal(err)
			}
			if a.Form != FormOCI || a.Gzip != gz {
				t.Errorf("form %s gzip %v, want %s gzip %v", a.Form, a.Gzip, FormOCI, gz)
			}
			want := []Image{{Ref: "registry.k8s.io/etcd:3.7.0-0", Digest: etcd.desc.Digest, MediaType: MediaTypeOCIManifest, Platforms: []string{"linux/amd64"}}}
			if !slices.EqualFunc(a.Images, want, imageEqual) {
				t.Errorf("images %+v, want %+v", a.Images, want)
			}
			if !a.Images[0].Has("linux/amd64") || a.Images[0].Has("linux/arm64") {
				t.Errorf("platforms %v: want linux/amd64 only", a.Images[0].Platforms)
			}
			st, _ := os.Stat(p)
			if a.Size != st.Size() {
				t.Errorf("size %d, want the file's %d", a.Size, st.Size())
			}
		})
	}
}

func imageEqual(a, b Image) bool {
	return a.Ref == b.Ref && a.Digest == b.Digest && a.MediaType == b.MediaType && slices.Equal(a.Platforms, b.Platforms)
}

// A multi-platform index exported for one platform (`ctr images export`
// without --all-platforms): the index and every manifest's descriptor are
// there, but only amd64's blobs. The image is named by the index's digest
// and is whole for amd64 only.
func TestReadMultiPlatformIndex(t *testing.T) {
	dir := t.TempDir()
	amd, arm := buildImage(t, "pause", "amd64"), buildImage(t, "pause-arm", "arm64")
	arm.desc.Platform.Variant = "v8"
	idx := mustJSON(t, map[string]any{"schemaVersion": 2, "mediaType": MediaTypeOCIIndex, "manifests": []descriptor{amd.desc, arm.desc}})
	idxDesc := descriptor{MediaType: MediaTypeOCIIndex, Digest: digestOf(idx), Size: int64(len(idx))}
	files := append([]file{layoutFile(), indexFile(t, named(idxDesc, "registry.k8s.io/pause:3.10.2")), blobFile(idx)}, amd.blobs()...)
	files = append(files, blobFile(arm.manifest)) // the manifest alone, without its config and layer
	a, err := Read(writeArchive(t, dir, "pause.tar", files, false))
	if err != nil {
		t.Fatal(err)
	}
	want := []Image{{Ref: "registry.k8s.io/pause:3.10.2", Digest: idxDesc.Digest, MediaType: MediaTypeOCIIndex, Platforms: []string{"linux/amd64"}}}
	if !slices.EqualFunc(a.Images, want, imageEqual) {
		t.Errorf("images %+v, want %+v", a.Images, want)
	}
	// Both platforms whole: both listed, the variant kept.
	files = append(files, blobFile(arm.config), blobFile(arm.layer))
	a, err = Read(writeArchive(t, dir, "pause-all.tar.gz", files, true))
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Images[0].Platforms; !slices.Equal(got, []string{"linux/amd64", "linux/arm64/v8"}) {
		t.Errorf("platforms %v, want linux/amd64 and linux/arm64/v8", got)
	}
	if !a.Images[0].Has("linux/arm64") || !a.Images[0].Has("linux/arm64/v8") || a.Images[0].Has("linux/arm64/v7") {
		t.Errorf("Has does not match variants as it should: %v", a.Images[0].Platforms)
	}
}

// What `ctr images export` writes: an OCI layout and a manifest.json for
// Docker. containerd imports it as OCI, so its digest is the OCI one.
func TestReadPrefersOCIOverDocker(t *testing.T) {
	dir := t.TempDir()
	etcd := buildImage(t, "etcd", "amd64")
	cfgName := "blobs/sha256/" + strings.TrimPrefix(digestOf(etcd.config), "sha256:")
	layerName := "blobs/sha256/" + strings.TrimPrefix(digestOf(etcd.layer), "sha256:")
	mj := mustJSON(t, []map[string]any{{"Config": cfgName, "RepoTags": []string{"registry.k8s.io/etcd:3.7.0-0"}, "Layers": []string{layerName}}})
	files := append([]file{layoutFile(), indexFile(t, named(etcd.desc, "registry.k8s.io/etcd:3.7.0-0")), {name: "manifest.json", data: mj}}, etcd.blobs()...)
	a, err := Read(writeArchive(t, dir, "export.tar", files, false))
	if err != nil {
		t.Fatal(err)
	}
	if a.Form != FormOCI || len(a.Images) != 1 || a.Images[0].Digest != etcd.desc.Digest {
		t.Errorf("read as %s with %+v, want the OCI manifest %s", a.Form, a.Images, etcd.desc.Digest)
	}
}

// dockerArchive is a `docker save` archive of the etcd test image: the
// configuration as <id>.json, the layer as <id>/layer.tar, a second tag
// whose layer is a symbolic link to the first, as docker writes shared
// layers.
func dockerArchive(t *testing.T, dir, name string, gz bool) (string, image) {
	t.Helper()
	etcd := buildImage(t, "etcd", "amd64")
	cfgHex := strings.TrimPrefix(digestOf(etcd.config), "sha256:")
	layerID := strings.Repeat("ab", 32)
	mj := mustJSON(t, []map[string]any{
		{"Config": cfgHex + ".json", "RepoTags": []string{"registry.k8s.io/etcd:3.7.0-0"}, "Layers": []string{layerID + "/layer.tar"}},
		{"Config": cfgHex + ".json", "RepoTags": []string{"etcd:local"}, "Layers": []string{"linked/layer.tar"}},
	})
	files := []file{
		{name: cfgHex + ".json", data: etcd.config},
		{name: layerID + "/VERSION", data: []byte("1.0")},
		{name: layerID + "/layer.tar", data: etcd.layer},
		{name: "linked/layer.tar", link: "../" + layerID + "/layer.tar"},
		{name: "manifest.json", data: mj},
		{name: "repositories", data: []byte(`{"registry.k8s.io/etcd":{"3.7.0-0":"` + layerID + `"}}`)},
	}
	return writeArchive(t, dir, name, files, gz), etcd
}

// A docker-archive has no manifest: containerd writes one on import, and
// shows its digest. The digest here is what containerd 1.6.20 showed after
// `ctr -n k8s.io images import` of this very archive.
func TestReadDockerArchive(t *testing.T) {
	const containerdDigest = "sha256:4cb60bd1887aa85934c1203d57ac3982fd5c122c2d0f3599d25a928b974fdf74"
	for _, gz := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "gzip"}[gz], func(t *testing.T) {
			p, etcd := dockerArchive(t, t.TempDir(), "etcd.tar", gz)
			a, err := Read(p)
			if err != nil {
				t.Fatal(err)
			}
			if a.Form != FormDocker || a.Gzip != gz {
				t.Errorf("form %s gzip %v, want %s gzip %v", a.Form, a.Gzip, FormDocker, gz)
			}
			want := []Image{
				{Ref: "registry.k8s.io/etcd:3.7.0-0", Digest: containerdDigest, MediaType: MediaTypeDockerManifest, Platforms: []string{"linux/amd64"}},
				{Ref: "docker.io/library/etcd:local", Digest: containerdDigest, MediaType: MediaTypeDockerManifest, Platforms: []string{"linux/amd64"}},
			}
			if !slices.EqualFunc(a.Images, want, imageEqual) {
				t.Errorf("images %+v, want %+v", a.Images, want)
			}
			if etcd.desc.Digest == a.Images[0].Digest {
				t.Errorf("digest %s is the OCI manifest's, not the one containerd makes", a.Images[0].Digest)
			}
		})
	}
}

// Archives that cannot be imported, or not under a name a kubelet looks
// for, are reported as such.
func TestReadRefusesBrokenArchives(t *testing.T) {
	dir := t.TempDir()
	etcd := buildImage(t, "etcd", "amd64")
	corrupt := blobFile(etcd.layer)
	corrupt.data = append(bytes.Clone(corrupt.data[:len(corrupt.data)-1]), 'x')
	for _, tc := range []struct {
		name  string
		files []file
		want  string
	}{
		{"no layout", []file{{name: "hello.txt", data: []byte("hi")}}, "neither an OCI-archive"},
		{"corrupt blob", []file{layoutFile(), indexFile(t, named(etcd.desc, "registry.k8s.io/etcd:3.7.0-0")), blobFile(etcd.manifest), blobFile(etcd.config), corrupt}, "is corrupt"},
		{"missing manifest", []file{layoutFile(), indexFile(t, named(etcd.desc, "registry.k8s.io/etcd:3.7.0-0"))}, "is not in the archive"},
		{"layout version", []file{{name: "oci-layout", data: []byte(`{"imageLayoutVersion":"2.0.0"}`)}, indexFile(t)}, "not 1.0.0"},
		{"docker layer missing", []file{{name: "manifest.json", data: []byte(`[{"Config":"c.json","RepoTags":["a:b"],"Layers":["l/layer.tar"]}]`)}, {name: "c.json", data: []byte(`{"os":"linux","architecture":"amd64"}`)}}, "layer l/layer.tar, which is not in the archive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(writeArchive(t, dir, strings.ReplaceAll(tc.name, " ", "-")+".tar", tc.files, false))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
	// A layer missing: the image is listed, but whole for no platform.
	files := []file{layoutFile(), indexFile(t, named(etcd.desc, "registry.k8s.io/etcd:3.7.0-0")), blobFile(etcd.manifest), blobFile(etcd.config)}
	a, err := Read(writeArchive(t, dir, "partial.tar", files, false))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Images) != 1 || len(a.Images[0].Platforms) != 0 {
		t.Errorf("images %+v, want etcd with no whole platform", a.Images)
	}
	// A bare tag names no repository: the image is unnamed.
	d := etcd.desc
	d.Annotations = map[string]string{AnnotationRefName: "3.7.0-0"}
	a, err = Read(writeArchive(t, dir, "bare.tar", append([]file{layoutFile(), indexFile(t, d)}, etcd.blobs()...), false))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Images) != 0 || len(a.Unnamed) != 1 || !strings.HasPrefix(a.Unnamed[0], "3.7.0-0 (sha256:") {
		t.Errorf("images %+v unnamed %v, want one unnamed 3.7.0-0", a.Images, a.Unnamed)
	}
	// A full name in the OCI annotation alone is kept as it is.
	d.Annotations = map[string]string{AnnotationRefName: "registry.k8s.io/etcd:3.7.0-0"}
	a, err = Read(writeArchive(t, dir, "refname.tar", append([]file{layoutFile(), indexFile(t, d)}, etcd.blobs()...), false))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Images) != 1 || a.Images[0].Ref != "registry.k8s.io/etcd:3.7.0-0" {
		t.Errorf("images %+v, want registry.k8s.io/etcd:3.7.0-0", a.Images)
	}
	zstd := filepath.Join(dir, "z.tar.zst")
	if err := os.WriteFile(zstd, []byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0}, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(zstd); err == nil || !strings.Contains(err.Error(), "zstd") {
		t.Errorf("zstd archive: %v, want an error naming zstd", err)
	}
}

func TestNormalizeDocker(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":                       "docker.io/library/busybox:latest",
		"busybox:1.36":                  "docker.io/library/busybox:1.36",
		"me/app:v1":                     "docker.io/me/app:v1",
		"index.docker.io/me/app:v1":     "docker.io/me/app:v1",
		"registry.k8s.io/etcd:3.7.0-0":  "registry.k8s.io/etcd:3.7.0-0",
		"localhost/etcd:x":              "localhost/etcd:x",
		"mirror.local:5000/k8s/pause:1": "mirror.local:5000/k8s/pause:1",
		"registry.k8s.io/pause@sha256:" + strings.Repeat("a", 64): "registry.k8s.io/pause@sha256:" + strings.Repeat("a", 64),
	} {
		got, err := NormalizeDocker(in)
		if err != nil || got != want {
			t.Errorf("NormalizeDocker(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "Upper/case:1", "a b", "/x", "x//y"} {
		if got, err := NormalizeDocker(bad); err == nil {
			t.Errorf("NormalizeDocker(%q) = %q, want an error", bad, got)
		}
	}
}

func TestReadDir(t *testing.T) {
	dir := t.TempDir()
	etcd, pause := buildImage(t, "etcd", "amd64"), buildImage(t, "pause", "amd64")
	writeArchive(t, dir, "etcd.tar", append([]file{layoutFile(), indexFile(t, named(etcd.desc, "registry.k8s.io/etcd:3.7.0-0"))}, etcd.blobs()...), false)
	writeArchive(t, dir, "pause.tar.gz", append([]file{layoutFile(), indexFile(t, named(pause.desc, "registry.k8s.io/pause:3.10.2"))}, pause.blobs()...), true)
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("images for prod"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Refs(); !slices.Equal(got, []string{"registry.k8s.io/etcd:3.7.0-0", "registry.k8s.io/pause:3.10.2"}) {
		t.Errorf("refs %v", got)
	}
	if a, im, ok := s.Find("registry.k8s.io/pause:3.10.2"); !ok || !a.Gzip || im.Digest != pause.desc.Digest {
		t.Errorf("pause found %v in %+v as %+v", ok, a, im)
	}
	if len(s.Skipped) != 1 || filepath.Base(s.Skipped[0]) != "README" {
		t.Errorf("skipped %v, want README", s.Skipped)
	}
	// Another archive naming etcd with another digest: which would a host get?
	other := buildImage(t, "etcd-other", "amd64")
	writeArchive(t, dir, "z-etcd.tar", append([]file{layoutFile(), indexFile(t, named(other.desc, "registry.k8s.io/etcd:3.7.0-0"))}, other.blobs()...), false)
	if _, err := ReadDir(dir); err == nil || !strings.Contains(err.Error(), "both hold registry.k8s.io/etcd:3.7.0-0") {
		t.Errorf("two etcd archives: %v, want a refusal naming both", err)
	}
}
