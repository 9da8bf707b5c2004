package ociimage

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ToDocker rewrites an OCI image layout tarball of one image, as Write makes
// it, as the docker-archive `docker save` would write of the same image:
// the configuration as <id>.json, each layer as <id>/layer.tar, a
// manifest.json naming them with the image's tags, and repositories. The
// image's blobs are held in memory: the lab's images are small.
func ToDocker(w io.Writer, oci io.Reader) error {
	files := map[string][]byte{}
	tr := tar.NewReader(oci)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read the OCI tarball: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return fmt.Errorf("read the OCI tarball: %w", err)
		}
		files[h.Name] = b
	}
	var idx index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil || len(idx.Manifests) != 1 {
		return fmt.Errorf("index.json: want one manifest (%v)", err)
	}
	ref := idx.Manifests[0].Annotations["io.containerd.image.name"]
	if ref == "" {
		return errors.New("index.json names no image")
	}
	var mf manifest
	if err := json.Unmarshal(files[blobPath(idx.Manifests[0].Digest)], &mf); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	id := func(d Descriptor) string { return strings.TrimPrefix(d.Digest, "sha256:") }
	type entry struct {
		name string
		data []byte
	}
	entries := []entry{{id(mf.Config) + ".json", files[blobPath(mf.Config.Digest)]}}
	var layers []string
	for _, l := range mf.Layers {
		name := id(l) + "/layer.tar"
		layers = append(layers, name)
		entries = append(entries, entry{id(l) + "/VERSION", []byte("1.0")}, entry{name, files[blobPath(l.Digest)]})
	}
	mj, err := json.Marshal([]map[string]any{{"Config": id(mf.Config) + ".json", "RepoTags": []string{ref}, "Layers": layers}})
	if err != nil {
		return err
	}
	repo, tag := ref[:strings.LastIndex(ref, ":")], ref[strings.LastIndex(ref, ":")+1:]
	rj, err := json.Marshal(map[string]map[string]string{repo: {tag: id(mf.Layers[len(mf.Layers)-1])}})
	if err != nil {
		return err
	}
	entries = append(entries, entry{"manifest.json", mj}, entry{"repositories", rj})
	tw := tar.NewWriter(w)
	for _, e := range entries {
		if e.data == nil {
			return fmt.Errorf("%s: its blob is not in the OCI tarball", e.name)
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: stamp()}); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	return tw.Close()
}
