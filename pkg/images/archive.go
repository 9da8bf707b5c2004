// Package images reads container image archives for hosts without a
// registry: docker-archives (`docker save`: manifest.json) and OCI-archives
// (`ctr images export`: oci-layout and index.json), plain or gzip'd. For
// each image an archive holds it gives the name and the digest containerd
// records once the archive is imported with `ctr images import`, and the
// platforms whose content is whole in the archive. An archive is read as a
// stream, once, and never held in memory: only its small JSON documents are.
// It is a leaf: it imports nothing of etcdadm's but the inventory.
package images

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
)

// Form is the layout of an archive.
type Form string

// The archive layouts containerd imports. An archive with both an OCI
// layout and a manifest.json (what `ctr images export` and Docker 25 write)
// is read as containerd reads it: as an OCI-archive.
const (
	FormOCI    Form = "oci-archive"
	FormDocker Form = "docker-archive"
)

// Media types, and the annotations that name an image in an OCI index.
const (
	MediaTypeOCIIndex       = "application/vnd.oci.image.index.v1+json"
	MediaTypeOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerConfig   = "application/vnd.docker.container.image.v1+json"
	mediaTypeDockerLayer    = "application/vnd.docker.image.rootfs.diff.tar"
	mediaTypeDockerLayerGz  = "application/vnd.docker.image.rootfs.diff.tar.gzip"

	AnnotationContainerdName = "io.containerd.image.name"
	AnnotationRefName        = "org.opencontainers.image.ref.name"
)

// Image is one named image of an archive.
type Image struct {
	// Ref is the name containerd gives the image on import.
	Ref string `json:"ref"`
	// Digest is what `ctr images ls` shows once the archive is imported:
	// the digest of the index or manifest the name points at.
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	// Platforms are those whose manifest, configuration and layers are all
	// in the archive, as os/architecture[/variant].
	Platforms []string `json:"platforms"`
}

// Has reports whether the archive holds the whole image for platform
// (os/architecture[/variant]; a variant on one side only matches).
func (i Image) Has(platform string) bool {
	return slices.ContainsFunc(i.Platforms, func(p string) bool { return PlatformMatches(p, platform) })
}

// PlatformMatches reports whether platform have serves platform want.
func PlatformMatches(have, want string) bool {
	h, w := strings.Split(have, "/"), strings.Split(want, "/")
	if len(h) < 2 || len(w) < 2 || h[0] != w[0] || h[1] != w[1] {
		return false
	}
	return len(h) < 3 || len(w) < 3 || h[2] == w[2]
}

// Archive is what one archive file holds.
type Archive struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
	Form Form   `json:"form"`
	Gzip bool   `json:"gzip,omitempty"`
	// Images are the named images, in the archive's order.
	Images []Image `json:"images"`
	// Unnamed are the images the archive holds without a whole name (a bare
	// tag, or none): containerd would not import them under a name a
	// kubelet looks for.
	Unnamed []string `json:"unnamed,omitempty"`
}

// Find returns the archive's image named ref.
func (a *Archive) Find(ref string) (Image, bool) {
	for _, im := range a.Images {
		if im.Ref == ref {
			return im, true
		}
	}
	return Image{}, false
}

// Read reads the archive at path.
func Read(p string) (*Archive, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("read image archive: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read image archive: %w", err)
	}
	a := &Archive{Path: p, Size: st.Size()}
	if err := a.read(f); err != nil {
		return nil, fmt.Errorf("read image archive %s: %w", p, err)
	}
	return a, nil
}

func (a *Archive) read(r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(4)
	var in io.Reader = br
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("gunzip: %w", err)
		}
		defer zr.Close()
		a.Gzip, in = true, zr
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return errors.New("it is compressed with zstd, which `ctr images import` does not read: decompress it, or compress it with gzip")
	}
	ents, err := scan(in)
	if err != nil {
		return err
	}
	switch {
	case ents.has("oci-layout"):
		a.Form = FormOCI
		return a.fromOCI(ents)
	case ents.has("manifest.json"):
		a.Form = FormDocker
		return a.fromDocker(ents)
	}
	return errors.New("it is neither an OCI-archive (no oci-layout) nor a docker-archive (no manifest.json): write it with `ctr images export` or `docker save`")
}

// entry is one file of the archive: its size and digest, its first bytes,
// and its content when it is a small JSON document.
type entry struct {
	size   int64
	digest string
	magic  []byte
	data   []byte
	// link is the target of a symbolic link (docker-archives link layers).
	link string
}

// entries are an archive's files by clean name.
type entries map[string]*entry

func (e entries) has(name string) bool { _, ok := e.get(name); return ok }

// get follows symbolic links to the file named name.
func (e entries) get(name string) (*entry, bool) {
	name = cleanName(name)
	for range 16 {
		en, ok := e[name]
		if !ok {
			return nil, false
		}
		if en.link == "" {
			return en, true
		}
		name = en.link
	}
	return nil, false
}

func cleanName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

const (
	// keepMax is the largest file kept in memory: manifests, indexes and
	// image configurations are a few KB.
	keepMax = 1 << 20
	// keptMax bounds all kept files together.
	keptMax = 64 << 20
)

// scan reads the tar stream once, hashing every file.
func scan(r io.Reader) (entries, error) {
	ents := entries{}
	tr := tar.NewReader(r)
	kept := 0
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not a readable tar archive: %w", err)
		}
		name := cleanName(hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeSymlink:
			ents[name] = &entry{link: cleanName(path.Join(path.Dir(name), hdr.Linkname))}
		case tar.TypeLink:
			ents[name] = &entry{link: cleanName(hdr.Linkname)}
		case tar.TypeReg:
			en, err := readEntry(tr, hdr.Size)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if kept += len(en.data); kept > keptMax {
				return nil, fmt.Errorf("it holds more than %d MiB of JSON documents: not an image archive", keptMax>>20)
			}
			ents[name] = en
		}
	}
	return ents, nil
}

func readEntry(r io.Reader, size int64) (*entry, error) {
	h := sha256.New()
	var head bytes.Buffer
	w := io.MultiWriter(h, &prefixWriter{buf: &head, max: keepMax})
	n, err := io.Copy(w, r)
	if err != nil {
		return nil, err
	}
	if n != size {
		return nil, fmt.Errorf("truncated: %d of %d bytes", n, size)
	}
	en := &entry{size: n, digest: "sha256:" + hex.EncodeToString(h.Sum(nil))}
	b := head.Bytes()
	en.magic = slices.Clone(b[:min(len(b), 4)])
	if t := bytes.TrimLeft(b, " \t\r\n"); n <= keepMax && len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		en.data = b
	}
	return en, nil
}

// prefixWriter keeps the first max bytes written to it.
type prefixWriter struct {
	buf *bytes.Buffer
	max int
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	if room := p.max - p.buf.Len(); room > 0 {
		p.buf.Write(b[:min(room, len(b))])
	}
	return len(b), nil
}

// descriptor is an OCI content descriptor, as read.
type descriptor struct {
	MediaType   string            `json:"mediaType,omitempty"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platform         `json:"platform,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
}

func (p platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// document is an index or a manifest, told apart by their fields.
type document struct {
	MediaType string       `json:"mediaType"`
	Manifests []descriptor `json:"manifests"`
	Config    *descriptor  `json:"config"`
	Layers    []descriptor `json:"layers"`
}

func (e entries) json(name string, v any) error {
	en, ok := e.get(name)
	if !ok {
		return fmt.Errorf("%s is missing", name)
	}
	if en.data == nil {
		return fmt.Errorf("%s is not a JSON document", name)
	}
	if err := json.Unmarshal(en.data, v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func blobName(digest string) (string, error) {
	alg, enc, ok := strings.Cut(digest, ":")
	if !ok || alg != "sha256" || len(enc) != 64 {
		return "", fmt.Errorf("digest %q is not a sha256 digest", digest)
	}
	return "blobs/sha256/" + enc, nil
}

// blob returns the blob d names, checking its size and digest.
func (e entries) blob(d descriptor) (*entry, string, error) {
	name, err := blobName(d.Digest)
	if err != nil {
		return nil, "", err
	}
	en, ok := e.get(name)
	if !ok {
		return nil, name, nil
	}
	if en.digest != d.Digest {
		return nil, name, fmt.Errorf("%s is corrupt: its content hashes to %s", name, en.digest)
	}
	if d.Size != 0 && en.size != d.Size {
		return nil, name, fmt.Errorf("%s is %d bytes, its descriptor says %d", name, en.size, d.Size)
	}
	return en, name, nil
}

func (a *Archive) fromOCI(ents entries) error {
	var layout struct {
		Version string `json:"imageLayoutVersion"`
	}
	if err := ents.json("oci-layout", &layout); err != nil {
		return err
	}
	if layout.Version != "1.0.0" {
		return fmt.Errorf("OCI layout version %q is not 1.0.0", layout.Version)
	}
	var idx document
	if err := ents.json("index.json", &idx); err != nil {
		return err
	}
	for _, d := range idx.Manifests {
		name := d.Annotations[AnnotationContainerdName]
		if name == "" && fullName(d.Annotations[AnnotationRefName]) {
			name = d.Annotations[AnnotationRefName]
		}
		en, blob, err := ents.blob(d)
		if err != nil {
			return err
		}
		if en == nil {
			return fmt.Errorf("index.json names %s, but %s is not in the archive", d.Digest, blob)
		}
		plats, mt, err := ents.platforms(d, 0)
		if err != nil {
			return err
		}
		if name == "" {
			label := d.Digest
			if tag := d.Annotations[AnnotationRefName]; tag != "" {
				label = tag + " (" + d.Digest + ")"
			}
			a.Unnamed = append(a.Unnamed, label)
			continue
		}
		plats = slices.DeleteFunc(plats, func(p string) bool { return p == "" })
		a.Images = append(a.Images, Image{Ref: name, Digest: d.Digest, MediaType: mt, Platforms: plats})
	}
	return nil
}

// platforms lists the platforms of the index or manifest d whose content
// is whole in the archive, and d's media type.
func (e entries) platforms(d descriptor, depth int) ([]string, string, error) {
	if depth > 4 {
		return nil, "", errors.New("indexes nest too deep")
	}
	en, blob, err := e.blob(d)
	if err != nil || en == nil {
		return nil, d.MediaType, err
	}
	var doc document
	if err := e.json(blob, &doc); err != nil {
		return nil, d.MediaType, err
	}
	mt := d.MediaType
	if mt == "" {
		mt = doc.MediaType
	}
	if mt == "" && doc.Manifests != nil {
		mt = MediaTypeOCIIndex
	}
	if mt == MediaTypeOCIIndex || mt == MediaTypeDockerList {
		var out []string
		for _, m := range doc.Manifests {
			plats, _, err := e.platforms(m, depth+1)
			if err != nil {
				return nil, mt, err
			}
			if m.Platform != nil && len(plats) > 0 {
				plats = []string{m.Platform.String()}
			}
			for _, p := range plats {
				if !slices.Contains(out, p) {
					out = append(out, p)
				}
			}
		}
		return out, mt, nil
	}
	if doc.Config == nil {
		return nil, mt, fmt.Errorf("%s is neither an image index nor a manifest", blob)
	}
	cfg, cblob, err := e.blob(*doc.Config)
	if err != nil || cfg == nil {
		return nil, mt, err
	}
	for _, l := range doc.Layers {
		if en, _, err := e.blob(l); err != nil || en == nil {
			return nil, mt, err
		}
	}
	var p platform
	if err := e.json(cblob, &p); err != nil {
		return nil, mt, err
	}
	if p.OS == "" || p.Architecture == "" {
		// Whole, but of no platform its configuration names.
		return []string{""}, mt, nil
	}
	return []string{p.String()}, mt, nil
}

func (a *Archive) fromDocker(ents entries) error {
	var mfsts []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := ents.json("manifest.json", &mfsts); err != nil {
		return err
	}
	for _, m := range mfsts {
		digest, plat, err := dockerManifest(ents, m.Config, m.Layers)
		if err != nil {
			return err
		}
		if len(m.RepoTags) == 0 {
			a.Unnamed = append(a.Unnamed, digest)
		}
		for _, tag := range m.RepoTags {
			ref, err := NormalizeDocker(tag)
			if err != nil {
				return fmt.Errorf("manifest.json: %w", err)
			}
			im := Image{Ref: ref, Digest: digest, MediaType: MediaTypeDockerManifest}
			if plat != "" {
				im.Platforms = []string{plat}
			}
			a.Images = append(a.Images, im)
		}
	}
	return nil
}

// layerDescriptor is a descriptor as containerd writes it in the manifest
// it makes for a docker-archive's image.
type layerDescriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

// dockerManifest is the manifest containerd writes when it imports a
// docker-archive's image, which has none: a Docker schema 2 manifest of
// the configuration and the layers as they are in the archive. Its digest
// is what `ctr images ls` shows.
func dockerManifest(ents entries, config string, layers []string) (string, string, error) {
	cfg, ok := ents.get(config)
	if !ok {
		return "", "", fmt.Errorf("manifest.json names configuration %s, which is not in the archive", config)
	}
	var p platform
	if err := ents.json(config, &p); err != nil {
		return "", "", err
	}
	m := struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		Config        layerDescriptor   `json:"config"`
		Layers        []layerDescriptor `json:"layers"`
	}{SchemaVersion: 2, MediaType: MediaTypeDockerManifest,
		Config: layerDescriptor{MediaType: mediaTypeDockerConfig, Digest: cfg.digest, Size: cfg.size}, Layers: []layerDescriptor{}}
	for _, l := range layers {
		en, ok := ents.get(l)
		if !ok {
			return "", "", fmt.Errorf("manifest.json names layer %s, which is not in the archive", l)
		}
		mt := mediaTypeDockerLayer
		if bytes.HasPrefix(en.magic, []byte{0x1f, 0x8b}) {
			mt = mediaTypeDockerLayerGz
		}
		m.Layers = append(m.Layers, layerDescriptor{MediaType: mt, Digest: en.digest, Size: en.size})
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", "", err
	}
	sum := sha256.Sum256(b)
	plat := ""
	if p.OS != "" && p.Architecture != "" {
		plat = p.String()
	}
	return "sha256:" + hex.EncodeToString(sum[:]), plat, nil
}
