package ociimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The docker-archive of an image names its configuration and layer by
// their digests and tags it with the image's reference.
func TestToDocker(t *testing.T) {
	src := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(src, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var oci bytes.Buffer
	if _, err := Write(&oci, Image{Ref: "registry.k8s.io/pause:3.10.2", Files: []File{{Path: "/pause", Source: src, Mode: 0o755}}, Entrypoint: []string{"/pause"}}); err != nil {
		t.Fatal(err)
	}
	ociFiles := readTar(t, bytes.NewReader(oci.Bytes()))
	var docker bytes.Buffer
	if err := ToDocker(&docker, &oci); err != nil {
		t.Fatal(err)
	}
	files := readTar(t, &docker)
	var mj []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &mj); err != nil || len(mj) != 1 {
		t.Fatalf("manifest.json %s: %v", files["manifest.json"], err)
	}
	m := mj[0]
	if len(m.RepoTags) != 1 || m.RepoTags[0] != "registry.k8s.io/pause:3.10.2" || len(m.Layers) != 1 {
		t.Errorf("manifest.json %+v", m)
	}
	for _, name := range []string{m.Config, m.Layers[0]} {
		hex := strings.TrimSuffix(strings.TrimSuffix(name, ".json"), "/layer.tar")
		if !bytes.Equal(files[name], ociFiles["blobs/sha256/"+hex]) {
			t.Errorf("%s is not the OCI blob %s", name, hex)
		}
	}
	if !strings.Contains(string(files["repositories"]), `"registry.k8s.io/pause":{"3.10.2":`) {
		t.Errorf("repositories %s", files["repositories"])
	}
}

func readTar(t *testing.T, r io.Reader) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[h.Name] = b
	}
}
