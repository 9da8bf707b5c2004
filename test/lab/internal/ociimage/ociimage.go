// Package ociimage writes a single-layer container image as an OCI image
// layout tarball, the format `ctr images import` reads, so the lab can build
// images without a container engine and import them without a registry.
package ociimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"
)

// epochUnix is the fixed time stamp of every entry, so equal inputs give
// byte-identical images (and digests).
const epochUnix = 946684800 // 2000-01-01T00:00:00Z

func stamp() time.Time { return time.Unix(epochUnix, 0).UTC() }

// File is one regular file of the image, read from Source on disk.
type File struct {
	Path   string // inside the image, e.g. "usr/local/bin/etcd"
	Source string
	Mode   int64
}

// Image describes the image to write.
type Image struct {
	// Ref is the full reference, e.g. "registry.k8s.io/etcd:3.7.0-0".
	Ref        string
	Files      []File
	Dirs       map[string]int64 // extra directories and their modes, e.g. "tmp": 01777
	Entrypoint []string
	Cmd        []string
	Env        []string
	// Arch is the GOARCH-style architecture; the running one if empty.
	Arch string
}

// Descriptor is an OCI content descriptor.
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *Platform         `json:"platform,omitempty"`
}

// Platform is an OCI platform.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

// Media types of the OCI image specification.
const (
	MediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar"
)

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        Descriptor   `json:"config"`
	Layers        []Descriptor `json:"layers"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []Descriptor `json:"manifests"`
}

type imageConfig struct {
	Created      time.Time `json:"created"`
	Architecture string    `json:"architecture"`
	OS           string    `json:"os"`
	Config       struct {
		Env        []string `json:"Env,omitempty"`
		Entrypoint []string `json:"Entrypoint,omitempty"`
		Cmd        []string `json:"Cmd,omitempty"`
		WorkingDir string   `json:"WorkingDir,omitempty"`
	} `json:"config"`
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History []struct {
		Created   time.Time `json:"created"`
		CreatedBy string    `json:"created_by"`
	} `json:"history"`
}

// Write writes img to w as an OCI image layout tar archive and returns the
// manifest's descriptor.
func Write(w io.Writer, img Image) (Descriptor, error) {
	if img.Ref == "" || !strings.Contains(img.Ref, ":") {
		return Descriptor{}, fmt.Errorf("image reference %q needs a tag", img.Ref)
	}
	arch := img.Arch
	if arch == "" {
		arch = runtime.GOARCH
	}
	layer, err := buildLayer(img)
	if err != nil {
		return Descriptor{}, fmt.Errorf("build layer of %s: %w", img.Ref, err)
	}
	layerDesc := describe(MediaTypeLayer, layer)

	var cfg imageConfig
	cfg.Created = stamp()
	cfg.Architecture, cfg.OS = arch, "linux"
	cfg.Config.Env = img.Env
	cfg.Config.Entrypoint = img.Entrypoint
	cfg.Config.Cmd = img.Cmd
	cfg.Config.WorkingDir = "/"
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = []string{layerDesc.Digest}
	cfg.History = append(cfg.History, struct {
		Created   time.Time `json:"created"`
		CreatedBy string    `json:"created_by"`
	}{stamp(), "etcdadm lab image builder"})
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return Descriptor{}, err
	}
	cfgDesc := describe(MediaTypeConfig, cfgJSON)

	mfJSON, err := json.Marshal(manifest{SchemaVersion: 2, MediaType: MediaTypeManifest, Config: cfgDesc, Layers: []Descriptor{layerDesc}})
	if err != nil {
		return Descriptor{}, err
	}
	mfDesc := describe(MediaTypeManifest, mfJSON)
	tag := img.Ref[strings.LastIndex(img.Ref, ":")+1:]
	mfDesc.Annotations = map[string]string{
		// containerd names the imported image after the first; other tools
		// read the second.
		"io.containerd.image.name":          img.Ref,
		"org.opencontainers.image.ref.name": tag,
	}
	mfDesc.Platform = &Platform{Architecture: arch, OS: "linux"}
	idxJSON, err := json.Marshal(index{SchemaVersion: 2, MediaType: MediaTypeIndex, Manifests: []Descriptor{mfDesc}})
	if err != nil {
		return Descriptor{}, err
	}

	tw := tar.NewWriter(w)
	entries := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", idxJSON},
		{blobPath(mfDesc.Digest), mfJSON},
		{blobPath(cfgDesc.Digest), cfgJSON},
		{blobPath(layerDesc.Digest), layer},
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: stamp()}); err != nil {
			return Descriptor{}, err
		}
	}
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: stamp()}); err != nil {
			return Descriptor{}, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return Descriptor{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return Descriptor{}, err
	}
	return mfDesc, nil
}

func blobPath(digest string) string {
	return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:")
}

func describe(mediaType string, b []byte) Descriptor {
	sum := sha256.Sum256(b)
	return Descriptor{MediaType: mediaType, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(b))}
}

// buildLayer returns the uncompressed layer tar: parent directories first,
// then the files, in a stable order.
func buildLayer(img Image) ([]byte, error) {
	dirs := map[string]int64{}
	for d, m := range img.Dirs {
		dirs[strings.Trim(d, "/")] = m
	}
	for _, f := range img.Files {
		for d := path.Dir(strings.Trim(f.Path, "/")); d != "." && d != "/"; d = path.Dir(d) {
			if _, ok := dirs[d]; !ok {
				dirs[d] = 0o755
			}
		}
	}
	names := make([]string, 0, len(dirs))
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range names {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: dirs[d], ModTime: stamp()}); err != nil {
			return nil, err
		}
	}
	files := append([]File(nil), img.Files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	for _, f := range files {
		b, err := os.ReadFile(f.Source)
		if err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.Trim(f.Path, "/"), Mode: f.Mode, Size: int64(len(b)), ModTime: stamp()}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
