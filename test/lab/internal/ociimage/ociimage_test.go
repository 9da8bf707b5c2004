package ociimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteIsValidAndDeterministic(t *testing.T) {
	src := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(src, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	img := Image{
		Ref:        "registry.k8s.io/pause:3.10.2",
		Files:      []File{{Path: "/pause", Source: src, Mode: 0o755}, {Path: "usr/local/bin/x", Source: src, Mode: 0o755}},
		Dirs:       map[string]int64{"tmp": 0o1777},
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		Entrypoint: []string{"/pause"},
	}
	var a, b bytes.Buffer
	desc, err := Write(&a, img)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Write(&b, img); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two writes of the same image differ")
	}

	blobs := map[string][]byte{}
	tr := tar.NewReader(&a)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		blobs[h.Name] = data
	}
	for name, data := range blobs {
		if d, ok := strings.CutPrefix(name, "blobs/sha256/"); ok && d != "" {
			sum := sha256.Sum256(data)
			if hex.EncodeToString(sum[:]) != d {
				t.Errorf("blob %s has digest %x", name, sum)
			}
		}
	}
	var idx index
	if err := json.Unmarshal(blobs["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != desc.Digest ||
		idx.Manifests[0].Annotations["io.containerd.image.name"] != img.Ref {
		t.Fatalf("index = %+v", idx)
	}
	var mf manifest
	if err := json.Unmarshal(blobs[blobPath(desc.Digest)], &mf); err != nil {
		t.Fatal(err)
	}
	var cfg imageConfig
	if err := json.Unmarshal(blobs[blobPath(mf.Config.Digest)], &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.RootFS.DiffIDs[0] != mf.Layers[0].Digest || cfg.Config.Entrypoint[0] != "/pause" {
		t.Errorf("config = %+v", cfg)
	}
	var names []string
	lr := tar.NewReader(bytes.NewReader(blobs[blobPath(mf.Layers[0].Digest)]))
	for {
		h, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	want := "tmp/ usr/ usr/local/ usr/local/bin/ pause usr/local/bin/x"
	if strings.Join(names, " ") != want {
		t.Errorf("layer entries = %q, want %q", strings.Join(names, " "), want)
	}
}
